"""Circuit breaker and adaptive limits, with a hand-driven clock where time matters."""

import asyncio

import pytest
from test_regeneration import journal_task

from service.config import CircuitSettings, UpstreamHttpSettings
from service.domain import AttemptResult, TransientFailure, Upstream, UpstreamLoad
from service.observability import Metrics
from service.resilience import (
    AdaptiveConcurrency,
    CircuitBreaker,
    CircuitState,
    ScopeLimits,
    UpstreamGate,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


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
    scope = ScopeLimits(max_concurrency=5, requests_per_minute=6000)
    scope.observe(throttled=True, retry_after=0.2, load=None)
    started = asyncio.get_running_loop().time()
    await scope.acquire()
    assert asyncio.get_running_loop().time() - started >= 0.18
    scope.release()


async def test_exhausted_rate_budget_reported_by_zuora_pauses_until_reset() -> None:
    scope = ScopeLimits(max_concurrency=5, requests_per_minute=6000)
    scope.observe(
        throttled=False, retry_after=None, load=UpstreamLoad(rate_remaining=0, rate_reset_seconds=1)
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(scope.acquire(), 0.3)


async def test_requests_per_minute_budget_holds_the_call_over_budget() -> None:
    scope = ScopeLimits(max_concurrency=100, requests_per_minute=6)
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
