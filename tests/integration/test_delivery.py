"""Delivery guarantees on the real broker: ordering per object, and no loss across SIGKILL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import (
    EventSender,
    ResultWatcher,
    Sandbox,
    Topics,
    event_of_kind,
    metric,
    new_event,
    unique,
)
from stack import PARTITIONS, ServiceProcess

from devstack import TansuBroker


@pytest.mark.usefixtures("regen_service")
async def test_one_object_in_order_while_other_objects_overtake_it_in_the_same_partition(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    slow, fast = unique("BJO-slow"), unique("BJO-fast")
    await sandbox.fault(operation="journal", kind="latency", latencyMs=1500, times=1, match=slow)
    slow_events = [
        new_event("journal.fixed", {"journalId": slow, "journal": {"notes": str(n)}})
        for n in range(3)
    ]
    fast_event = new_event("journal.fixed", {"journalId": fast})
    for event in slow_events:
        await sender.send(event, key=slow, partition=0)
    await sender.send(fast_event, key=fast, partition=0)

    await watcher.wait_for([e["id"] for e in slow_events] + [fast_event["id"]])

    # The fast object was not held up behind the slow one in their shared partition.
    slow_first = watcher.results[slow_events[0]["id"]][0]
    fast_result = watcher.results[fast_event["id"]][0]
    assert fast_result.json()["time"] < slow_first.json()["time"]
    # The slow object's events reached the upstream one at a time, in order.
    calls = await sandbox.requests("journal", match=slow)
    assert [c["body"]["notes"] for c in calls] == ["0", "1", "2"]
    for earlier, later in itertools.pairwise(calls):
        assert later["received_at"] >= earlier["answered_at"]


async def test_sigkill_with_events_in_flight_loses_no_result(
    kafka_broker: TansuBroker,
    service_env: Callable[..., dict[str, str]],
    sandbox: Sandbox,
    logs_dir: Path,
) -> None:
    topics = Topics.named(unique("crash"))
    await kafka_broker.create_topics(topics.all, PARTITIONS)
    run = unique("crash")
    # Slow answers keep well over 100 events in flight when the process is killed.
    await sandbox.fault(operation="*", kind="latency", latencyMs=400, match=run)
    env = service_env(
        topics,
        REGEN_ZUORA__MAX_CONCURRENCY="200",
        REGEN_SOFTWAREONE__MAX_CONCURRENCY="200",
        # An object's events are identical here; coalesced, they would finish together with the
        # first call instead of staying in flight one after another.
        REGEN_PROCESSING__COALESCE="false",
    )
    watcher = ResultWatcher(kafka_broker.bootstrap_servers, topics)
    await watcher.start()
    sender = EventSender(kafka_broker.bootstrap_servers, topics.input)
    await sender.start()
    service = ServiceProcess(env, logs_dir / "crash-service.log")
    try:
        events = [event_of_kind(n, f"{run}-{n % 40}") for n in range(300)]
        await sender.send_many((event, f"{run}-{n % 40}") for n, event in enumerate(events))
        await asyncio.to_thread(service.start)
        await watcher.wait_for([events[0]["id"]], timeout=60)
        in_flight = metric(service.metrics(), "regen_events_in_flight")
        service.process.kill()
        finished_before_kill = sum(1 for e in events if watcher.results.get(e["id"]))

        await asyncio.to_thread(service.start)
        results = await watcher.wait_for([e["id"] for e in events], timeout=120)

        assert in_flight >= 100, f"only {in_flight} events were in flight at the kill"
        assert finished_before_kill < len(events)
        assert all(r.topic == topics.succeeded for r in results.values())
        assert watcher.dead_letters == []
        # SIGTERM once idle: a clean exit that commits what it finished.
        assert await asyncio.to_thread(service.process.terminate) == 0
        assert '"stopped consuming"' in service.process.log_tail(10)
        duplicates = sum(len(watcher.results[e["id"]]) - 1 for e in events)
        print(
            f"\nkilled with {in_flight} in flight, {finished_before_kill} finished before; "
            f"{duplicates} duplicate results after restart"
        )
    finally:
        service.process.terminate()
        await sender.stop()
        await watcher.stop()
