"""The retry loop: attempts counted, Retry-After obeyed, call slots free while waiting."""

import asyncio
import itertools
import logging
from typing import Any

import pytest
from fakes import CountingSharedCall, journal_task, softwareone_regenerator

from regen_sync import regeneration
from regen_sync.config import CircuitSettings
from regen_sync.domain import (
    AttemptResult,
    Failed,
    FailureReason,
    RegenerationTask,
    Succeeded,
    TransientFailure,
    plan,
)
from regen_sync.observability import Metrics


class ScriptedUpstream:
    """Answers each journal id from its own script of results, logging every call."""

    def __init__(
        self,
        scripts: dict[str, list[AttemptResult]],
        shared_call: CountingSharedCall[Any] | None = None,
    ) -> None:
        self.scripts = scripts
        self.calls: list[str] = []
        self.keys: list[str] = []
        self.called = asyncio.Event()
        self.shared_call = shared_call
        self.closed_before_each_call: list[int] = []

    async def attempt(self, task: RegenerationTask) -> AttemptResult:
        journal_id = task.event.data.journalId  # type: ignore[union-attr]
        self.calls.append(journal_id)
        self.keys.append(task.idempotency_key)
        if self.shared_call is not None:
            self.closed_before_each_call.append(self.shared_call.closed)
        self.called.set()
        return self.scripts[journal_id].pop(0)


async def test_transient_then_success_counts_attempts() -> None:
    upstream = ScriptedUpstream(
        {"J1": [TransientFailure("busy"), TransientFailure("busy"), Succeeded({"journalId": "J1"})]}
    )
    outcome = await softwareone_regenerator(upstream).regenerate(journal_task("J1"))
    assert isinstance(outcome.result, Succeeded)
    assert outcome.attempts == 3


async def test_exhausted_retries_keep_the_last_status_and_details() -> None:
    upstream = ScriptedUpstream(
        {"J1": [TransientFailure("down", 503, {"title": "Unavailable"})] * 3}
    )
    outcome = await softwareone_regenerator(upstream, max_attempts=3).regenerate(journal_task("J1"))
    assert isinstance(outcome.result, Failed)
    assert outcome.result.reason is FailureReason.RETRIES_EXHAUSTED
    assert (outcome.result.http_status, outcome.result.retryable) == (503, True)
    assert outcome.result.details == {"title": "Unavailable"}
    assert outcome.attempts == 3


async def test_permanent_failure_is_not_retried() -> None:
    upstream = ScriptedUpstream({"J1": [Failed(FailureReason.NOT_FOUND, "gone", http_status=404)]})
    outcome = await softwareone_regenerator(upstream).regenerate(journal_task("J1"))
    assert isinstance(outcome.result, Failed)
    assert outcome.attempts == 1
    assert upstream.calls == ["J1"]


async def test_an_event_waiting_out_retry_after_does_not_hold_the_only_call_slot() -> None:
    upstream = ScriptedUpstream(
        {
            "SLOW": [TransientFailure("busy", 503, retry_after_seconds=0.3), Succeeded({})],
            "FAST": [Succeeded({})],
        }
    )
    service = softwareone_regenerator(upstream, max_concurrency=1)
    slow = asyncio.create_task(service.regenerate(journal_task("SLOW")))
    await upstream.called.wait()  # SLOW made its first attempt and is now waiting
    fast = await asyncio.wait_for(service.regenerate(journal_task("FAST")), timeout=0.2)
    assert isinstance(fast.result, Succeeded)
    assert upstream.calls == ["SLOW", "FAST"]
    assert (await slow).attempts == 2
    assert upstream.calls == ["SLOW", "FAST", "SLOW"]


async def test_a_429_pauses_every_event_of_the_upstream_for_its_retry_after() -> None:
    upstream = ScriptedUpstream(
        {
            "THROTTLED": [TransientFailure("429", 429, retry_after_seconds=0.3), Succeeded({})],
            "NEXT": [Succeeded({})],
        }
    )
    service = softwareone_regenerator(upstream)
    throttled = asyncio.create_task(service.regenerate(journal_task("THROTTLED")))
    await upstream.called.wait()
    started = asyncio.get_running_loop().time()
    await service.regenerate(journal_task("NEXT"))
    # Sending NEXT at once would only earn another 429 and spend the shared request budget.
    assert asyncio.get_running_loop().time() - started >= 0.25
    assert (await throttled).attempts == 2


class UpstreamDownForCalls:
    """Down (503) for its first ``calls_down`` calls, whoever makes them, then up."""

    def __init__(self, calls_down: int) -> None:
        self.calls_down = calls_down
        self.calls = 0

    async def attempt(self, task: RegenerationTask) -> AttemptResult:
        self.calls += 1
        await asyncio.sleep(0)
        if self.calls <= self.calls_down:
            return TransientFailure("down", 503)
        return Succeeded({})


async def test_an_outage_is_waited_out_without_using_up_attempts() -> None:
    upstream = UpstreamDownForCalls(calls_down=20)
    service = softwareone_regenerator(
        upstream,
        max_attempts=2,
        circuit=CircuitSettings(failure_threshold=2, open_seconds=0.01, max_open_seconds=0.02),
    )
    outcomes = await asyncio.gather(*(service.regenerate(journal_task(f"J{n}")) for n in range(3)))
    # 20 failed calls among 3 events with 2 attempts each, yet all succeeded: once two
    # distinct events had failed, the circuit opened and the failures were the outage's.
    assert all(isinstance(outcome.result, Succeeded) for outcome in outcomes)
    assert upstream.calls == 23
    assert sum(outcome.attempts for outcome in outcomes) == 23


async def test_one_event_failing_on_its_own_does_not_open_the_circuit() -> None:
    upstream = ScriptedUpstream({"J1": [TransientFailure("timeout", 504)] * 3})
    service = softwareone_regenerator(
        upstream, max_attempts=3, circuit=CircuitSettings(failure_threshold=2)
    )
    outcome = await service.regenerate(journal_task("J1"))
    assert isinstance(outcome.result, Failed)
    assert outcome.result.reason is FailureReason.RETRIES_EXHAUSTED
    assert outcome.attempts == 3


# Each answer Zuora may give, in the order of the script below, and whether the next attempt
# repeats the Idempotency-Key: only where the outcome is not known (yet).
ANSWERS_AND_KEY_KEPT = [
    (TransientFailure("no answer: ReadTimeout"), True),
    (TransientFailure("in progress", 409), True),
    (TransientFailure("bad gateway", 502), True),
    (TransientFailure("gateway timeout", 504), True),
    (TransientFailure("lock competition", 200, {"reasons": [{"code": "53100050"}]}), False),
    (TransientFailure("server error", 500), False),
    (TransientFailure("too many requests", 429), False),
    (TransientFailure("unavailable", 503), False),
]


async def test_the_key_is_kept_only_while_the_outcome_is_unknown() -> None:
    script = [answer for answer, _ in ANSWERS_AND_KEY_KEPT] + [Succeeded({})]
    upstream = ScriptedUpstream({"J1": script})
    task = journal_task("J1")
    outcome = await softwareone_regenerator(upstream, max_attempts=20).regenerate(task)
    assert isinstance(outcome.result, Succeeded)
    assert upstream.keys[0] == task.idempotency_key
    kept = [later == earlier for earlier, later in itertools.pairwise(upstream.keys)]
    assert kept == [key_kept for _, key_kept in ANSWERS_AND_KEY_KEPT]
    assert len(set(upstream.keys)) == 5, "four answers renewed the key"


async def test_a_redelivered_event_walks_the_same_keys() -> None:
    def answers() -> list[AttemptResult]:
        return [TransientFailure("busy", 500), TransientFailure("busy", 503), Succeeded({})]

    first, redelivered = ScriptedUpstream({"J1": answers()}), ScriptedUpstream({"J1": answers()})
    await softwareone_regenerator(first).regenerate(journal_task("J1"))
    await softwareone_regenerator(redelivered).regenerate(journal_task("J1"))
    assert first.keys == redelivered.keys
    assert len(set(first.keys)) == 3


def test_each_redrive_starts_from_keys_of_its_own() -> None:
    task = journal_task("J1")
    event = task.event
    redriven, again = plan(event, redrive=1), plan(event, redrive=2)
    keys = {
        task.idempotency_key,
        task.with_renewed_key().idempotency_key,
        redriven.idempotency_key,
        redriven.with_renewed_key().idempotency_key,
        again.idempotency_key,
    }
    assert len(keys) == 5
    assert redriven.identity == task.identity, "still one event to the circuit breaker"
    assert all(len(key) <= 255 for key in keys)


async def test_the_shared_call_is_closed_as_each_attempt_goes_out() -> None:
    task = journal_task("J1")
    shared_call = CountingSharedCall(task)
    upstream = ScriptedUpstream(
        {"J1": [TransientFailure("busy"), TransientFailure("busy"), Succeeded({})]}, shared_call
    )
    outcome = await softwareone_regenerator(upstream).regenerate(task, shared_call=shared_call)
    assert outcome.attempts == 3
    assert upstream.closed_before_each_call == [1, 2, 3]


class CountedRetrying(regeneration.AsyncRetrying):
    made = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        CountedRetrying.made += 1
        super().__init__(*args, **kwargs)


@pytest.mark.parametrize(
    ("script", "attempts", "retry_loops"),
    [
        ([Succeeded({})], 1, 0),
        ([Failed(FailureReason.NOT_FOUND, "gone", http_status=404)], 1, 0),
        ([TransientFailure("busy"), Succeeded({})], 2, 1),
    ],
    ids=["success", "permanent-failure", "transient-failure"],
)
async def test_retry_machinery_is_built_only_once_an_attempt_failed_transiently(
    monkeypatch: pytest.MonkeyPatch, script: list[AttemptResult], attempts: int, retry_loops: int
) -> None:
    monkeypatch.setattr(CountedRetrying, "made", 0)
    monkeypatch.setattr(regeneration, "AsyncRetrying", CountedRetrying)
    upstream = ScriptedUpstream({"J1": script})
    outcome = await softwareone_regenerator(upstream).regenerate(journal_task("J1"))
    assert outcome.attempts == attempts
    assert CountedRetrying.made == retry_loops


async def test_retries_are_logged_and_counted_from_the_first_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream = ScriptedUpstream(
        {"J1": [TransientFailure("busy", 503, retry_after_seconds=0.05)] * 2 + [Succeeded({})]}
    )
    metrics = Metrics()
    task = journal_task("J1")
    with caplog.at_level(logging.INFO, logger=regeneration.__name__):
        outcome = await softwareone_regenerator(upstream, metrics=metrics).regenerate(task)
    assert outcome.attempts == 3
    retries = [record for record in caplog.records if record.message.startswith("retrying")]
    # The wait honours Retry-After from the first attempt on.
    assert [(r.attempt, r.wait_seconds) for r in retries] == [(1, 0.05), (2, 0.05)]  # type: ignore[attr-defined]
    retried = metrics.registry.get_sample_value(
        "regen_retries_total", {"operation": str(task.operation)}
    )
    assert retried == 2


async def test_a_single_attempt_allowed_is_not_retried() -> None:
    upstream = ScriptedUpstream({"J1": [TransientFailure("busy", 503)]})
    outcome = await softwareone_regenerator(upstream, max_attempts=1).regenerate(journal_task("J1"))
    assert isinstance(outcome.result, Failed)
    assert outcome.result.reason is FailureReason.RETRIES_EXHAUSTED
    assert (outcome.attempts, upstream.calls) == (1, ["J1"])
