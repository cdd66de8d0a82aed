"""Every call to one upstream passes its gate: the circuit breaker, then the limits of the
call's scope (the Zuora entity, or the whole tenant), at this replica's share of the group's
budget."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from regen_sync.config import CircuitSettings, UpstreamHttpSettings
from regen_sync.domain import AttemptResult, RegenerationTask, TransientFailure, Upstream
from regen_sync.observability import Metrics
from regen_sync.resilience.circuit import CircuitBreaker, CircuitState
from regen_sync.resilience.limits import AdaptiveConcurrency, ScopeLimits
from regen_sync.resilience.share import GroupShare


@dataclass(frozen=True, slots=True)
class GateResult:
    result: AttemptResult
    upstream_unavailable: bool
    """The attempt failed while the upstream's circuit is open: the outage, not the event,
    is to blame, so the attempt does not count against the event's retry budget."""


class UpstreamGate:
    def __init__(
        self,
        upstream: Upstream,
        limits: UpstreamHttpSettings,
        circuit: CircuitSettings,
        metrics: Metrics,
        *,
        max_pause_seconds: float,
        share: GroupShare,
        heavy_max_concurrency: int | None = None,
    ) -> None:
        """``heavy_max_concurrency``: the group's budget of heavy calls (invoice generation)
        at once, within ``limits.max_concurrency``; None when the upstream has none."""
        self._upstream = upstream
        self._limits = limits
        self._metrics = metrics
        self._max_pause_seconds = max_pause_seconds
        self._share = share
        self._heavy_budget = heavy_max_concurrency
        self._scopes: dict[str, ScopeLimits] = {}
        self._heavy_scopes: dict[str, AdaptiveConcurrency] = {}
        self.breaker = CircuitBreaker(
            upstream,
            failure_threshold=circuit.failure_threshold,
            open_seconds=circuit.open_seconds,
            max_open_seconds=circuit.max_open_seconds,
            on_change=self._circuit_changed,
        )
        share.subscribe(self._reshared)
        self._reshared(share)

    async def call(
        self, task: RegenerationTask, attempt: Callable[[], Awaitable[AttemptResult]]
    ) -> GateResult:
        heavy = self._heavy_scope(task.limit_scope) if task.operation.heavy else None
        if heavy is None:
            return await self._call(task, attempt)
        # A heavy call holds a heavy slot and an ordinary one: it counts towards both limits.
        await heavy.acquire()
        try:
            gated = await self._call(task, attempt)
        finally:
            heavy.release()
        if isinstance(gated.result, TransientFailure) and gated.result.throttled:
            heavy.throttled()
        else:
            heavy.answered()
        return gated

    async def _call(
        self, task: RegenerationTask, attempt: Callable[[], Awaitable[AttemptResult]]
    ) -> GateResult:
        scope = self._scope(task.limit_scope)
        probe = await self._admit_with_slot(scope)
        try:
            try:
                result = await attempt()
            finally:
                scope.release()
        except BaseException:
            if probe:
                await self.breaker.abandon()
            raise
        throttled = outage = False
        retry_after = None
        if isinstance(result, TransientFailure):
            throttled, outage = result.throttled, result.suggests_outage
            if result.retry_after_seconds is not None:
                retry_after = min(result.retry_after_seconds, self._max_pause_seconds)
        if throttled:
            self._metrics.throttled.labels(self._upstream).inc()
        scope.observe(throttled=throttled, retry_after=retry_after, load=result.load)
        await self.breaker.record(task.identity, outage=outage, probe=probe)
        return GateResult(result, upstream_unavailable=outage and not self.breaker.closed)

    async def _admit_with_slot(self, scope: ScopeLimits) -> bool:
        """Wait for the circuit to admit the call and for a call slot; True for the probe.

        The circuit is asked again once the slot is granted: a burst admitted while it was
        closed may still be waiting for slots when it opens, and must then wait with the
        held events instead of calling an upstream that is down."""
        while True:
            probe = await self._admit()
            try:
                await scope.acquire()
            except BaseException:
                if probe:
                    await self.breaker.abandon()
                raise
            if probe or self.breaker.closed:
                return probe
            scope.release()

    async def _admit(self) -> bool:
        if self.breaker.closed:
            return False
        held = self._metrics.events_held.labels(self._upstream)
        held.inc()
        try:
            return await self.breaker.admit()
        finally:
            held.dec()

    def _scope(self, name: str) -> ScopeLimits:
        scope = self._scopes.get(name)
        if scope is None:
            scope = self._scopes[name] = ScopeLimits(
                max_concurrency=self._limits.max_concurrency,
                requests_per_minute=self._limits.requests_per_minute,
                share=self._share,
                on_concurrency_change=lambda limit: self._concurrency_changed(),
            )
        return scope

    def _heavy_scope(self, name: str) -> AdaptiveConcurrency | None:
        if self._heavy_budget is None:
            return None
        heavy = self._heavy_scopes.get(name)
        if heavy is None:
            heavy = self._heavy_scopes[name] = AdaptiveConcurrency(
                self._share.of(self._heavy_budget), fraction=self._share.fraction
            )
        return heavy

    def _reshared(self, share: GroupShare) -> None:
        budgets = {
            "max_concurrency": self._limits.max_concurrency,
            "requests_per_minute": self._limits.requests_per_minute,
        }
        if self._heavy_budget is not None:
            budgets["heavy_max_concurrency"] = self._heavy_budget
            for heavy in self._heavy_scopes.values():
                heavy.resize(share.of(self._heavy_budget), share.fraction)
        for budget, value in budgets.items():
            self._metrics.budget_share.labels(self._upstream, budget).set(share.of(value))
        for scope in self._scopes.values():
            scope.reshare()
        self._concurrency_changed()

    def _concurrency_changed(self) -> None:
        # One series per upstream (entities are not a bounded label): the tightest scope.
        self._metrics.concurrency_limit.labels(self._upstream).set(
            min(
                (scope.concurrency.limit for scope in self._scopes.values()),
                default=self._share.of(self._limits.max_concurrency),
            )
        )

    def _circuit_changed(self, state: CircuitState) -> None:
        self._metrics.circuit_state.labels(self._upstream).set(state)
        if state is CircuitState.OPEN:
            self._metrics.circuit_opened.labels(self._upstream).inc()
