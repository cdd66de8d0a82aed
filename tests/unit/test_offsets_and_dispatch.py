"""Commit positions never pass an unfinished event; ordering per key, concurrency across keys."""

import asyncio

from service.kafka import Dispatcher, OffsetTracker, Partition
from service.observability import Metrics

P0 = Partition("input", 0)
P1 = Partition("input", 1)


def test_position_is_the_lowest_unfinished_offset() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.started(P0, offset) for offset in range(10, 15)]
    for ticket in (tickets[1], tickets[3], tickets[4]):
        tracker.finished(ticket)
    assert tracker.commit_positions() == {P0: 10}
    tracker.finished(tickets[0])
    assert tracker.commit_positions() == {P0: 12}
    tracker.finished(tickets[2])
    assert tracker.commit_positions() == {P0: 15}


def test_only_moved_positions_are_committed_again() -> None:
    tracker = OffsetTracker()
    tracker.finished(tracker.started(P0, 0))
    tracker.finished(tracker.started(P1, 7))
    positions = tracker.commit_positions()
    assert positions == {P0: 1, P1: 8}
    tracker.committed(positions)
    assert tracker.commit_positions() == {}
    assert tracker.commit_positions(only={P1}) == {}


def test_a_ticket_from_a_revoked_assignment_changes_nothing() -> None:
    tracker = OffsetTracker()
    stale = tracker.started(P0, 5)
    tracker.forget({P0})
    fresh = tracker.started(P0, 5)
    tracker.finished(stale)
    assert tracker.commit_positions() == {P0: 5}
    tracker.finished(fresh)
    assert tracker.commit_positions() == {P0: 6}


async def test_same_key_runs_in_order_and_other_keys_overtake() -> None:
    tracker = OffsetTracker()
    dispatcher = Dispatcher(tracker, Metrics(), max_in_flight=10)
    release_first, b1_done = asyncio.Event(), asyncio.Event()
    log: list[str] = []

    def work(name: str, gate: asyncio.Event | None = None):  # type: ignore[no-untyped-def]
        async def run() -> None:
            log.append(f"start {name}")
            if gate is not None:
                await gate.wait()
            log.append(f"end {name}")
            if name == "B1":
                b1_done.set()

        return run

    await dispatcher.submit(P0, 0, "A", work("A1", release_first))
    await dispatcher.submit(P0, 1, "A", work("A2"))
    await dispatcher.submit(P0, 2, "B", work("B1"))
    await asyncio.wait_for(b1_done.wait(), 5)
    assert log == ["start A1", "start B1", "end B1"]
    assert tracker.commit_positions() == {P0: 0}
    release_first.set()
    assert await dispatcher.drain(grace_seconds=5)
    assert log[3:] == ["end A1", "start A2", "end A2"]
    assert tracker.commit_positions() == {P0: 3}


async def test_a_full_window_holds_the_consume_loop_back() -> None:
    dispatcher = Dispatcher(OffsetTracker(), Metrics(), max_in_flight=2)
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    await dispatcher.submit(P0, 0, "A", blocked)
    await dispatcher.submit(P0, 1, "B", blocked)
    third = asyncio.create_task(dispatcher.submit(P0, 2, "C", blocked))
    await asyncio.sleep(0.05)
    assert not third.done()
    gate.set()
    await asyncio.wait_for(third, 5)
    assert await dispatcher.drain(grace_seconds=5)


async def test_work_cut_off_by_shutdown_is_not_committable() -> None:
    tracker = OffsetTracker()
    dispatcher = Dispatcher(tracker, Metrics(), max_in_flight=5)

    async def never_ends() -> None:
        await asyncio.Event().wait()

    async def quick() -> None:
        return None

    await dispatcher.submit(P0, 0, "A", quick)
    await dispatcher.submit(P0, 1, "B", never_ends)
    assert not await dispatcher.drain(grace_seconds=0.1)
    assert tracker.commit_positions() == {P0: 1}
