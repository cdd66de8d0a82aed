"""Several service processes in one consumer group, on the real broker and the sandbox: the
upstream budget is the group's, and scaling out, scaling in and a crashed member lose nothing
and (apart from the crash) redo nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from harness import (
    MAX_ATTEMPTS,
    ResultWatcher,
    assert_each_zuora_event_ran_once,
    distinct_objects,
    event_of_kind,
    eventually,
    metric,
    new_event,
    unique,
)
from stack import PARTITIONS, ServiceProcess, Stack

pytestmark = pytest.mark.reliability

REPLICAS = 3
ZUORA_BUDGET = 12
"""The group's Zuora budget, and the sandbox tenant's concurrency limit: every replica is
configured with it, as one Deployment configures all its pods."""


def assigned_partitions(service: ServiceProcess) -> float:
    return metric(service.metrics(), "regen_partitions_assigned")


async def settled(services: list[ServiceProcess], timeout: float = 90) -> None:
    """Every partition owned, each replica with its even part of them."""
    even = PARTITIONS // len(services)
    await eventually(
        lambda: all(assigned_partitions(service) == even for service in services), timeout
    )


async def start_all(services: list[ServiceProcess]) -> None:
    await asyncio.gather(*(asyncio.to_thread(service.start) for service in services))


def results_per_event(watcher: ResultWatcher, events: list[dict[str, Any]]) -> list[int]:
    return [len(watcher.results.get(event["id"], [])) for event in events]


class SteadyStream:
    """Sends events for distinct objects at a steady pace, from ``start`` until ``stop``, while
    a test changes the group: whatever the group does, it does mid-stream."""

    def __init__(self, stack: Stack, per_second: int) -> None:
        self._stack = stack
        self._per_second = per_second
        self._run = unique("STREAM")
        self.events: list[dict[str, Any]] = []
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        chunk = max(1, self._per_second // 10)
        while not self._stopping.is_set():
            batch = [
                (event_of_kind(n, f"{self._run}-{n}"), f"{self._run}-{n}")
                for n in range(len(self.events), len(self.events) + chunk)
            ]
            await self._stack.sender.send_many(batch)
            self.events.extend(event for event, _ in batch)
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        assert self._task is not None
        self._stopping.set()
        await self._task


async def test_the_zuora_budget_holds_for_the_whole_group_of_replicas(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack(
        "replica-budget",
        sandbox_flags=("--concurrency-limit", str(ZUORA_BUDGET), "--latency-ms", "50"),
        start=False,
        REGEN_ZUORA__MAX_CONCURRENCY=str(ZUORA_BUDGET),
    )
    services = [stack.new_service() for _ in range(REPLICAS)]
    await start_all(services)
    await settled(services)
    shares = [
        metric(s.metrics(), "regen_budget_share", upstream="zuora", budget="max_concurrency")
        for s in services
    ]
    assert shares == [ZUORA_BUDGET // REPLICAS] * REPLICAS

    run = unique("BUDGET")
    events = [
        (
            new_event("billing.document.fixed", {"documentType": "Invoice", "documentNumber": key}),
            key,
        )
        for key in (f"{run}-{n}" for n in range(1200))
    ]
    started = time.monotonic()
    await stack.sender.send_many(events)
    results = await stack.watcher.wait_for([event["id"] for event, _ in events], timeout=180)
    seconds = time.monotonic() - started

    stats = await stack.sandbox.stats()
    assert all(result.topic == stack.topics.succeeded for result in results.values())
    assert stats["zuoraMaxConcurrent"] <= ZUORA_BUDGET
    assert stats["zuoraRefusedForConcurrency"] == 0, "no 429 once the group has settled"
    # No replica repeated another's call: one call per event, under its first key.
    assert_each_zuora_event_ran_once(
        await stack.sandbox.requests(), [event for event, _ in events], max_calls_per_key=1
    )
    figures.update(
        replicas=REPLICAS,
        zuora_budget_for_the_group=ZUORA_BUDGET,
        sandbox_concurrency_limit=ZUORA_BUDGET,
        share_per_replica=shares,
        events=len(events),
        zuora_calls=stats["requests"]["billing"],
        peak_zuora_in_flight=stats["zuoraMaxConcurrent"],
        answered_429=stats["zuoraRefusedForConcurrency"],
        events_per_second=round(len(events) / seconds),
    )


async def test_scaling_out_then_in_mid_stream_gives_every_event_exactly_one_result(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack(
        "replica-scale", sandbox_flags=("--concurrency-limit", "0", "--latency-ms", "20")
    )
    first = stack.service
    stream = SteadyStream(stack, per_second=60)
    stream.start()
    await eventually(lambda: bool(stream.events), timeout=10)
    await stack.watcher.wait_for([stream.events[0]["id"]], timeout=60)

    added = [stack.new_service() for _ in range(REPLICAS - 1)]
    scale_out_at = time.monotonic()
    await start_all(added)
    await settled([first, *added])
    scaled_out_seconds = time.monotonic() - scale_out_at
    sent_at_scale_in = len(stream.events)
    scale_in_at = time.monotonic()
    assert await asyncio.to_thread(first.process.terminate, 60) == 0, first.process.log_tail()
    await settled(added)
    scaled_in_seconds = time.monotonic() - scale_in_at
    await asyncio.sleep(2)  # the stream goes on for a while on the group that is left
    await stream.stop()

    events = stream.events
    results = await stack.watcher.wait_for([event["id"] for event in events], timeout=180)
    counts = results_per_event(stack.watcher, events)
    assert all(result.topic == stack.topics.succeeded for result in results.values())
    assert stack.watcher.dead_letters == []
    assert counts.count(0) == 0, "lost events"
    assert sum(count - 1 for count in counts) == 0, "duplicate results"
    # Partitions changed hands only after their events were finished and committed: no
    # Zuora call was made twice, not even to get a stored answer back.
    assert_each_zuora_event_ran_once(await stack.sandbox.requests(), events, max_calls_per_key=1)
    figures.update(
        events=len(events),
        replicas="1 -> 3 -> 2 (SIGTERM)",
        sent_before_scale_in=sent_at_scale_in,
        events_lost=counts.count(0),
        duplicate_results=sum(count - 1 for count in counts),
        seconds_until_the_group_settled_after_scale_out=round(scaled_out_seconds, 1),
        seconds_until_the_group_settled_after_scale_in=round(scaled_in_seconds, 1),
    )


async def test_a_sigkilled_member_loses_nothing_and_its_events_succeed_on_the_others(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack(
        "replica-kill",
        sandbox_flags=("--concurrency-limit", "0", "--latency-ms", "200"),
        start=False,
    )
    services = [stack.new_service() for _ in range(REPLICAS)]
    await start_all(services)
    await settled(services)
    events = distinct_objects("KILL", 900)
    await stack.sender.send_many(events)
    await eventually(
        lambda: sum(1 for event, _ in events if stack.watcher.results.get(event["id"])) >= 100,
        timeout=60,
    )
    victim, survivors = services[0], services[1:]
    in_flight = metric(victim.metrics(), "regen_events_in_flight")
    victim.process.kill()
    killed_at = time.monotonic()

    results = await stack.watcher.wait_for([event["id"] for event, _ in events], timeout=180)
    recovered_seconds = time.monotonic() - killed_at
    await settled(survivors)
    counts = results_per_event(stack.watcher, [event for event, _ in events])
    assert in_flight > 0, "the member was killed with events in flight"
    assert all(result.topic == stack.topics.succeeded for result in results.values())
    assert stack.watcher.dead_letters == []
    assert counts.count(0) == 0
    # The killed member's uncommitted events are read again by the others, whose calls get
    # the answers Zuora stored (or 409 while the killed member's call is still running).
    calls_per_key = assert_each_zuora_event_ran_once(
        await stack.sandbox.requests(),
        [event for event, _ in events],
        max_calls_per_key=1 + MAX_ATTEMPTS,
    )
    figures.update(
        events=len(events),
        replicas="3 -> 2 (SIGKILL)",
        in_flight_on_the_killed_member=int(in_flight),
        events_lost=counts.count(0),
        duplicate_results=sum(count - 1 for count in counts),
        max_calls_per_idempotency_key=max(calls_per_key.values()),
        seconds_from_kill_to_the_last_result=round(recovered_seconds, 1),
    )
