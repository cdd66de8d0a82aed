"""Calling the upstream for a task until it succeeds, fails for good, or runs out of attempts.

Attempts made while the upstream's circuit is open do not use up the event's attempts: an
outage is waited out, however long, and only failures of the event itself exhaust it.

Each attempt after an answer goes out under a renewed Idempotency-Key: Zuora stores every
answer under its key, so repeating a key after a ``success:false``, a 500 or a 429 would only
get that answer back. A key is repeated only when the outcome is unknown (no answer, 502/504)
or still in progress (409).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result, wait_random_exponential

from regen_sync.coalescing import SharedCall
from regen_sync.config import ProcessingSettings
from regen_sync.domain import (
    AttemptResult,
    Failed,
    FailureReason,
    Outcome,
    RegenerationTask,
    Succeeded,
    TransientFailure,
    Upstream,
)
from regen_sync.observability import Metrics, Tracing, mark_failed
from regen_sync.resilience import UpstreamGate
from regen_sync.upstream import UpstreamClient

logger = logging.getLogger(__name__)

_ATTEMPT_OUTCOME = {Succeeded: "succeeded", Failed: "rejected", TransientFailure: "transient"}


class _Attempts:
    """One event's attempts: how many count against it, and the task (key) of the next."""

    def __init__(self, task: RegenerationTask, max_attempts: int) -> None:
        self.task = task
        self.max_attempts = max_attempts
        self.counted = 0

    def exhausted(self, state: RetryCallState) -> bool:
        return self.counted >= self.max_attempts


class Regenerator:
    def __init__(
        self,
        clients: Mapping[Upstream, UpstreamClient],
        gates: Mapping[Upstream, UpstreamGate],
        settings: ProcessingSettings,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self._clients = clients
        self._tracing = tracing or Tracing.disabled()
        self._gates = gates
        self._settings = settings
        self._metrics = metrics
        # Full jitter keeps a storm of retries from arriving at the upstream together.
        self._backoff = wait_random_exponential(
            multiplier=settings.backoff_initial_seconds, max=settings.backoff_max_seconds
        )

    async def regenerate(
        self, task: RegenerationTask, *, shared_call: SharedCall[Any] | None = None
    ) -> Outcome:
        """``shared_call`` is closed as each attempt is about to be sent, once the upstream's
        gate has let it through."""
        before_call = shared_call.close if shared_call is not None else _nothing
        client = self._clients[task.operation.upstream]
        attempts = _Attempts(task, self._settings.max_attempts)
        retrying = AsyncRetrying(
            stop=attempts.exhausted,
            wait=self._wait,
            retry=retry_if_result(lambda result: isinstance(result, TransientFailure)),
            before_sleep=lambda state: self._before_retry(task, state),
            retry_error_callback=_last_result,
        )
        result: AttemptResult = await retrying(self._attempt, client, attempts, before_call)
        made = retrying.statistics.get("attempt_number", 1)
        if isinstance(result, TransientFailure):
            result = Failed(
                FailureReason.RETRIES_EXHAUSTED,
                f"gave up after {made} attempts; last: {result.message}",
                retryable=True,
                http_status=result.http_status,
                details=result.details,
            )
        return Outcome(result, made)

    async def _attempt(
        self, client: UpstreamClient, attempts: _Attempts, before_call: Callable[[], object]
    ) -> AttemptResult:
        task = attempts.task

        async def send() -> AttemptResult:
            before_call()
            with self._tracing.upstream_call(task.operation, task.operation.upstream) as span:
                result = await client.attempt(task)
                if not isinstance(result, Succeeded):
                    mark_failed(span, result.message, result.http_status)
                return result

        # The gate holds a call slot for this attempt only: an event waiting out a backoff
        # or Retry-After must not keep other objects' events from the upstream.
        gated = await self._gates[task.operation.upstream].call(task, send)
        result = gated.result
        if not gated.upstream_unavailable:
            attempts.counted += 1
        if isinstance(result, TransientFailure) and not result.outcome_unknown:
            attempts.task = task.with_renewed_key()
        self._metrics.upstream_requests.labels(task.operation, _ATTEMPT_OUTCOME[type(result)]).inc()
        return result

    def _wait(self, state: RetryCallState) -> float:
        result = _last_result(state)
        if isinstance(result, TransientFailure) and result.retry_after_seconds is not None:
            return min(result.retry_after_seconds, self._settings.max_retry_after_seconds)
        return float(self._backoff(state))

    def _before_retry(self, task: RegenerationTask, state: RetryCallState) -> None:
        self._metrics.retries.labels(task.operation).inc()
        result = _last_result(state)
        logger.info(
            "retrying after a transient failure",
            extra={
                "event_id": task.event.id,
                "operation": task.operation,
                "attempt": state.attempt_number,
                "wait_seconds": round(state.upcoming_sleep, 3),
                "cause": result.message if isinstance(result, TransientFailure) else None,
            },
        )


def _nothing() -> None:
    pass


def _last_result(state: RetryCallState) -> AttemptResult | None:
    """The previous attempt's result (attempts return results; exceptions are not retried)."""
    if state.outcome is None or state.outcome.failed:
        return None
    result: AttemptResult = state.outcome.result()
    return result
