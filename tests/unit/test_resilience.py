"""Circuit breaker and adaptive limits, with a hand-driven clock where time matters."""

import asyncio

import pytest
from fakes import Clock, journal_task, planned_task

from regen_sync.config import CircuitSettings, UpstreamHttpSettings
from regen_sync.domain import (
    AttemptResult,
    Succeeded,
    TransientFailure,
    Upstream,
    UpstreamLoad,
)
from regen_sync.observability import Metrics
from regen_sync.resilience import (
    AdaptiveConcurrency,
    CircuitBreaker,
    CircuitState,
    GroupShare,
    ScopeLimits,
    UpstreamGate,
)


def breaker(clock: Clock | None = None, **overrides: float) -> CircuitBreaker:
    settings = {"failure_threshold": 3, "open_seconds": 0.05, "max_open_seconds": 0.2} | overrides
    return CircuitBreaker(
        "zuora",
        failure_threshold=int(settings["failure_threshold"]),
        open_seconds=settings["open_seconds"],
        max_open_seconds=settings["max_open_seconds"],
        **({"clock": clock} if clock else {}),
    )


async def fail(circuit: CircuitBreaker, *keys: str) -> None:
    for key in keys:
        await circuit.record(key, outage=True, probe=False)


async def test_opens_after_distinct_events_fail_in_a_row() -> None:
    circuit = breaker()
    await fail(circuit, "a", "b")
    assert circuit.state is CircuitState.CLOSED
    await fail(circuit, "c")
    assert circuit.state is CircuitState.OPEN


async def test_one_event_failing_again_and_again_never_opens_it() -> None:
    circuit = breaker()
    await fail(circuit, *["a"] * 10)
    assert circuit.state is CircuitState.CLOSED


async def test_a_success_between_failures_starts_the_count_again() -> None:
    circuit = breaker()
    await fail(circuit, "a", "b")
    await circuit.record("c", outage=False, probe=False)
    await fail(circuit, "d", "e")
    assert circuit.state is CircuitState.CLOSED


async def test_429_and_409_style_answers_are_not_outages() -> None:
    # The gate reports them with outage=False: they show an upstream that answers.
    circuit = breaker()
    await fail(circuit, "a", "b")
    await circuit.record("c", outage=False, probe=False)
    assert circuit.state is CircuitState.CLOSED


async def test_open_circuit_holds_callers_then_lets_one_probe_through() -> None:
    circuit = breaker(open_seconds=0.05)
    await fail(circuit, "a", "b", "c")
    waiters = [asyncio.create_task(circuit.admit()) for _ in range(5)]
    await asyncio.sleep(0.01)
    assert not any(waiter.done() for waiter in waiters)

    done, pending = await asyncio.wait(waiters, timeout=1, return_when=asyncio.FIRST_COMPLETED)
    assert [task.result() for task in done] == [True], "exactly one probe"
    assert circuit.state is CircuitState.HALF_OPEN

    await circuit.record("probe", outage=False, probe=True)
    released = await asyncio.gather(*pending)
    assert released == [False] * 4
    assert circuit.state is CircuitState.CLOSED


async def test_failed_probe_reopens_for_twice_as_long_up_to_the_maximum() -> None:
    clock = Clock()
    circuit = breaker(clock, open_seconds=10, max_open_seconds=25)
    await fail(circuit, "a", "b", "c")
    for expected_wait in (20, 25, 25):
        clock.now += 1000
        assert await circuit.admit() is True
        await circuit.record("probe", outage=True, probe=True)
        assert circuit.state is CircuitState.OPEN
        clock.now += expected_wait - 0.001
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(circuit.admit(), 0.02)
        clock.now += 0.002
        assert await asyncio.wait_for(circuit.admit(), 1) is True
        await circuit.abandon()


async def test_an_abandoned_probe_hands_the_turn_to_the_next_caller() -> None:
    circuit = breaker(open_seconds=0.01)
    await fail(circuit, "a", "b", "c")
    assert await circuit.admit() is True
    second = asyncio.create_task(circuit.admit())
    await asyncio.sleep(0.02)
    assert not second.done()
    await circuit.abandon()
    assert await asyncio.wait_for(second, 1) is True


async def test_concurrency_cap_blocks_at_the_limit_and_hands_over_on_release() -> None:
    limit = AdaptiveConcurrency(2)
    await limit.acquire()
    await limit.acquire()
    third = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0.01)
    assert not third.done()
    limit.release()
    await asyncio.wait_for(third, 1)
    assert limit.in_use == 2


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    limit = AdaptiveConcurrency(1)
    await limit.acquire()
    waiter = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limit.release()
    assert limit.in_use == 0
    await asyncio.wait_for(limit.acquire(), 1)


async def test_a_waiter_cancelled_just_before_a_hand_over_stays_cancelled() -> None:
    # What a shutdown does: cancel the waiting events while slots are being freed. The hand-over
    # drops the cancelled waiter; its cancellation must still end as one, not as an error (which
    # the event would have turned into an internal_error result).
    limit = AdaptiveConcurrency(1)
    await limit.acquire()
    waiting = asyncio.create_task(limit.acquire())
    await asyncio.sleep(0)
    waiting.cancel()
    limit.release()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert limit.in_use == 0
    await asyncio.wait_for(limit.acquire(), 1)


async def test_429_halves_the_cap_once_per_overload_then_it_climbs_back_when_quiet() -> None:
    clock = Clock()
    changes: list[int] = []
    limit = AdaptiveConcurrency(16, on_change=changes.append, clock=clock)
    for _ in range(16):
        await limit.acquire()
    for _ in range(16):  # a burst of 429s answers one overload
        limit.throttled()
        limit.release()
    assert limit.limit == 8
    for _ in range(50):
        limit.answered()
    assert limit.limit == 8, "no growth right after a 429"
    clock.now += 6
    for _ in range(8 + 9):  # then one step up per full round of answers
        limit.answered()
    assert limit.limit == 10
    assert changes == [16, 8, 9, 10]


async def test_never_above_the_limit_zuora_reports_minus_a_reserve() -> None:
    clock = Clock()
    limit = AdaptiveConcurrency(32, clock=clock)
    limit.respect(UpstreamLoad(concurrency_limit=8, concurrency_remaining=5))
    assert limit.limit == 7
    clock.now += 10
    for _ in range(100):
        limit.answered()
    assert limit.limit == 7


async def test_little_headroom_reported_by_zuora_steps_the_cap_down_and_stops_growth() -> None:
    clock = Clock()
    limit = AdaptiveConcurrency(10, clock=clock)
    limit.respect(UpstreamLoad(concurrency_limit=40, concurrency_remaining=3))
    assert limit.limit == 9
    clock.now += 10
    limit.respect(UpstreamLoad(concurrency_limit=40, concurrency_remaining=4))
    for _ in range(50):
        limit.answered()
    assert limit.limit == 9, "no growth without headroom"
    limit.respect(UpstreamLoad(concurrency_limit=40, concurrency_remaining=20))
    for _ in range(10):
        limit.answered()
    assert limit.limit == 10


async def test_retry_after_pauses_the_whole_scope() -> None:
    scope = ScopeLimits(max_concurrency=5, requests_per_minute=6000, share=GroupShare.whole())
    scope.observe(throttled=True, retry_after=0.2, load=None)
    started = asyncio.get_running_loop().time()
    await scope.acquire()
    assert asyncio.get_running_loop().time() - started >= 0.18
    scope.release()


async def test_exhausted_rate_budget_reported_by_zuora_pauses_until_reset() -> None:
    scope = ScopeLimits(max_concurrency=5, requests_per_minute=6000, share=GroupShare.whole())
    scope.observe(
        throttled=False, retry_after=None, load=UpstreamLoad(rate_remaining=0, rate_reset_seconds=1)
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(scope.acquire(), 0.3)


async def test_requests_per_minute_budget_holds_the_call_over_budget() -> None:
    scope = ScopeLimits(max_concurrency=100, requests_per_minute=6, share=GroupShare.whole())
    for _ in range(6):
        await asyncio.wait_for(scope.acquire(), 0.5)
        scope.release()
    # The seventh call in the same minute waits for the bucket to drain (10 s per request).
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(scope.acquire(), 0.3)
    assert scope.concurrency.in_use == 0, "a call cancelled while over budget frees its slot"


async def test_a_call_waiting_for_a_slot_when_the_circuit_opens_waits_instead_of_calling() -> None:
    metrics = Metrics()
    gate = UpstreamGate(
        Upstream.SOFTWAREONE,
        UpstreamHttpSettings(max_concurrency=1),
        CircuitSettings(failure_threshold=1, open_seconds=60, max_open_seconds=60),
        metrics,
        max_pause_seconds=1,
        share=GroupShare.whole(),
    )
    first_called, release_first = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def upstream_down(name: str) -> AttemptResult:
        calls.append(name)
        first_called.set()
        if name == "first":
            await release_first.wait()
        return TransientFailure("503", http_status=503)

    def held() -> float | None:
        return metrics.registry.get_sample_value("regen_events_held", {"upstream": "softwareone"})

    first = asyncio.create_task(gate.call(journal_task("J1"), lambda: upstream_down("first")))
    await first_called.wait()
    # Admitted while the circuit is closed, then queued behind the only slot.
    second = asyncio.create_task(gate.call(journal_task("J2"), lambda: upstream_down("second")))
    for _ in range(3):
        await asyncio.sleep(0)
    assert held() == 0
    release_first.set()
    assert (await first).upstream_unavailable
    assert gate.breaker.state is CircuitState.OPEN
    # Given the slot, it finds the circuit open and joins the held events.
    for _ in range(10):
        await asyncio.sleep(0)
    assert held() == 1
    assert calls == ["first"], "the waiting call must not reach an upstream that is down"
    assert not second.done()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second


@pytest.mark.parametrize(
    ("budget", "assigned", "total", "share"),
    [
        (12, 6, 6, 12),  # the only replica uses the whole budget
        (12, 2, 6, 4),  # three replicas, two partitions each
        (12, 1, 6, 2),  # skew: a replica with one partition gets half of one with two
        (10, 2, 6, 3),  # rounded down: the replicas' shares never add up to more than 10
        (2, 1, 6, 1),  # never 0 while it owns a partition, or that partition would stall
        (12, 0, 6, 0),  # no partition, no calls
    ],
)
def test_a_replica_uses_the_share_of_each_budget_that_matches_its_partitions(
    budget: int, assigned: int, total: int, share: int
) -> None:
    assert GroupShare(assigned, total).of(budget) == share


def test_the_replicas_shares_never_exceed_the_group_budget() -> None:
    for budget in range(6, 50):
        for spread in ([6], [3, 3], [2, 2, 2], [2, 2, 1, 1], [2, 1, 1, 1, 1], [1] * 6):
            assert sum(GroupShare(a, 6).of(budget) for a in spread) <= budget, (budget, spread)


async def test_a_new_share_resizes_the_cap_and_keeps_an_earlier_throttling_in_proportion() -> None:
    clock = Clock()
    limit = AdaptiveConcurrency(12, clock=clock)
    limit.resize(4, 2 / 6)
    assert limit.limit == 4
    for _ in range(4):
        await limit.acquire()
    limit.throttled()
    assert limit.limit == 2
    limit.resize(12, 1.0)  # scale-in: this replica owns every partition again
    assert limit.limit == 6, "halved by the 429 before, so half of the new share"
    limit.resize(0, 0.0)
    assert limit.limit == 0, "no partitions: no calls"
    limit.resize(4, 2 / 6)
    assert limit.limit == 4


async def test_the_limit_zuora_reports_is_the_tenants_so_each_replica_takes_its_share() -> None:
    limit = AdaptiveConcurrency(20, fraction=1 / 3)
    limit.respect(UpstreamLoad(concurrency_limit=12, concurrency_remaining=12))
    # 12 less a reserve of 2 for the group, a third of it for this replica.
    assert limit.limit == 3


async def test_a_scope_waits_for_a_slot_until_its_replica_is_assigned_partitions() -> None:
    share = GroupShare()
    scope = ScopeLimits(max_concurrency=6, requests_per_minute=600, share=share)
    waiting = asyncio.create_task(scope.acquire())
    await asyncio.sleep(0.01)
    assert not waiting.done(), "before its first assignment a replica owns nothing"
    share.update(2, 6)
    scope.reshare()
    await asyncio.wait_for(waiting, 1)
    assert scope.concurrency.limit == 2


async def test_the_request_budget_is_shared_by_partitions_too() -> None:
    # The group may make 18 requests a minute; this replica owns a third of the partitions,
    # so it gets 6 at once (its share of the burst) and then waits for the bucket.
    scope = ScopeLimits(max_concurrency=100, requests_per_minute=18, share=GroupShare(2, 6))
    for _ in range(6):
        await asyncio.wait_for(scope.acquire(), 0.5)
        scope.release()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(scope.acquire(), 0.3)


async def test_the_gate_exports_the_replicas_share_and_follows_each_rebalance() -> None:
    metrics, share = Metrics(), GroupShare()
    gate = UpstreamGate(
        Upstream.ZUORA,
        UpstreamHttpSettings(max_concurrency=12, requests_per_minute=600),
        CircuitSettings(),
        metrics,
        max_pause_seconds=1,
        share=share,
    )

    def exported(budget: str) -> float | None:
        return metrics.registry.get_sample_value(
            "regen_budget_share", {"upstream": "zuora", "budget": budget}
        )

    assert (exported("max_concurrency"), exported("requests_per_minute")) == (0, 0)
    share.update(2, 6)
    assert (exported("max_concurrency"), exported("requests_per_minute")) == (4, 200)
    calls = 0

    async def answered() -> AttemptResult:
        nonlocal calls
        calls += 1
        return TransientFailure("busy", http_status=503)

    await gate.call(journal_task("J1"), answered)
    share.update(6, 6)
    assert exported("max_concurrency") == 12
    assert (
        metrics.registry.get_sample_value("regen_upstream_concurrency_limit", {"upstream": "zuora"})
        == 12
    )
    assert calls == 1


async def test_invoice_generation_gets_its_own_smaller_share_within_the_zuora_budget() -> None:
    gate = UpstreamGate(
        Upstream.ZUORA,
        UpstreamHttpSettings(max_concurrency=12),
        CircuitSettings(),
        Metrics(),
        max_pause_seconds=1,
        share=GroupShare(2, 6),  # a third of the group's budgets: 4 calls, 2 of them heavy
        heavy_max_concurrency=6,
    )
    running: dict[str, int] = {"invoice": 0, "billing": 0}
    release = asyncio.Event()

    async def call(kind: str) -> AttemptResult:
        running[kind] += 1
        await release.wait()
        return Succeeded({})

    invoices = [
        planned_task(
            "account.charges.fixed",
            {"accountId": f"A{n}", "invoiceDate": "2026-11-01", "targetDate": "2026-11-30"},
            f"I{n}",
        )
        for n in range(5)
    ]
    billings = [
        planned_task(
            "billing.document.fixed", {"documentType": "Invoice", "documentId": f"D{n}"}, f"B{n}"
        )
        for n in range(5)
    ]
    calls = [asyncio.create_task(gate.call(task, lambda: call("invoice"))) for task in invoices]
    calls += [asyncio.create_task(gate.call(task, lambda: call("billing"))) for task in billings]
    for _ in range(10):
        await asyncio.sleep(0)
    assert running == {"invoice": 2, "billing": 2}, "heavy calls count towards both caps"
    release.set()
    await asyncio.gather(*calls)
    assert running == {"invoice": 5, "billing": 5}
