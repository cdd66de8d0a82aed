"""Commit positions never pass an unfinished event; ordering per key, concurrency across keys."""

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from service.kafka import Dispatcher, Group, Intake, OffsetTracker, Partition
from service.kafka import intake as intake_module
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


@dataclass
class Job:
    """A stand-in event: a name, an optional gate to hold it, an optional merge key."""

    name: str
    gate: asyncio.Event | None = None
    merge: str | None = None


class Recorder:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.groups: list[list[str]] = []
        self.ended = asyncio.Event()

    async def handle(self, group: Group[Job]) -> None:
        # Sealed at once, as if its upstream call went out at the start.
        names = [job.name for job in group.seal()]
        self.groups.append(names)
        self.log.append(f"start {'+'.join(names)}")
        for job in group.seal():
            if job.gate is not None:
                await job.gate.wait()
        self.log.append(f"end {'+'.join(names)}")
        self.ended.set()


def dispatcher(
    recorder: Recorder, tracker: OffsetTracker | None = None, max_in_flight: int = 10
) -> Dispatcher[Job]:
    return Dispatcher(
        tracker or OffsetTracker(),
        Metrics(),
        max_in_flight=max_in_flight,
        handle=recorder.handle,
        merge_key=lambda job: job.merge,
    )


async def test_same_key_runs_in_order_and_other_keys_overtake() -> None:
    tracker, recorder = OffsetTracker(), Recorder()
    events = dispatcher(recorder, tracker)
    release_first = asyncio.Event()
    await events.submit(P0, 0, Job("A1", release_first), key="A", lane="zuora")
    await events.submit(P0, 1, Job("A2"), key="A", lane="zuora")
    await events.submit(P0, 2, Job("B1"), key="B", lane="zuora")
    await asyncio.wait_for(recorder.ended.wait(), 5)
    assert recorder.log == ["start A1", "start B1", "end B1"]
    assert tracker.commit_positions() == {P0: 0}
    release_first.set()
    assert await events.drain(grace_seconds=5)
    assert recorder.log[3:] == ["end A1", "start A2", "end A2"]
    assert tracker.commit_positions() == {P0: 3}


async def test_waiting_events_with_the_same_merge_key_run_as_one_group() -> None:
    recorder = Recorder()
    events = dispatcher(recorder)
    release_first = asyncio.Event()
    await events.submit(P0, 0, Job("A1", release_first, merge="x"), key="A", lane="zuora")
    await events.submit(P1, 0, Job("B1"), key="B", lane="zuora")
    await asyncio.wait_for(recorder.ended.wait(), 5)  # B1 ran, so A1 has started too
    for offset, (name, merge) in enumerate(
        [("A2", "x"), ("A3", "x"), ("A4", "y"), ("A5", "x")], start=1
    ):
        await events.submit(P0, offset, Job(name, merge=merge), key="A", lane="zuora")
    release_first.set()
    assert await events.drain(grace_seconds=5)
    # A1 had started before the others arrived, so it is alone; A4 differs, so it splits
    # the run, and A5 is not moved ahead of it.
    assert recorder.groups == [["A1"], ["B1"], ["A2", "A3"], ["A4"], ["A5"]]


async def test_events_arriving_before_the_call_goes_out_join_it_and_later_ones_do_not() -> None:
    call_may_go_out, call_went_out, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()
    groups: list[list[str]] = []

    async def handle(group: Group[Job]) -> None:
        if group.first.gate is not None:  # the first call waits for its upstream slot
            await call_may_go_out.wait()
        groups.append([job.name for job in group.seal()])
        call_went_out.set()
        if group.first.gate is not None:
            await finish.wait()

    events = Dispatcher(
        OffsetTracker(), Metrics(), max_in_flight=10, handle=handle, merge_key=lambda j: j.merge
    )
    await events.submit(P0, 0, Job("A1", asyncio.Event(), merge="x"), key="A", lane="zuora")
    await events.submit(P0, 1, Job("A2", merge="x"), key="A", lane="zuora")
    await events.submit(P0, 2, Job("A3", merge="x"), key="A", lane="zuora")
    call_may_go_out.set()
    await asyncio.wait_for(call_went_out.wait(), 5)
    await events.submit(P0, 3, Job("A4", merge="x"), key="A", lane="zuora")
    finish.set()
    assert await events.drain(grace_seconds=5)
    assert groups == [["A1", "A2", "A3"], ["A4"]]


async def test_an_unsealed_group_is_its_first_event_alone() -> None:
    seen: list[Job] = []

    async def handle(group: Group[Job]) -> None:
        seen.append(group.first)  # decided without a call: never sealed

    tracker = OffsetTracker()
    events = Dispatcher(
        tracker, Metrics(), max_in_flight=10, handle=handle, merge_key=lambda j: j.merge
    )
    for offset in range(3):
        await events.submit(P0, offset, Job(f"A{offset}", merge="x"), key="A", lane="zuora")
    assert await events.drain(grace_seconds=5)
    assert [job.name for job in seen] == ["A0", "A1", "A2"]
    assert tracker.commit_positions() == {P0: 3}


async def test_a_full_window_holds_the_consume_loop_back_for_its_lane_only() -> None:
    events = dispatcher(Recorder(), max_in_flight=2)
    gate = asyncio.Event()
    await events.submit(P0, 0, Job("A", gate), key="A", lane="zuora")
    await events.submit(P0, 1, Job("B", gate), key="B", lane="zuora")
    third = asyncio.create_task(events.submit(P0, 2, Job("C", gate), key="C", lane="zuora"))
    await asyncio.sleep(0.05)
    assert not third.done()
    # The other upstream's lane has room of its own.
    await asyncio.wait_for(events.submit(P1, 0, Job("J"), key="J", lane="softwareone"), 1)
    gate.set()
    await asyncio.wait_for(third, 5)
    assert await events.drain(grace_seconds=5)


async def test_work_cut_off_by_shutdown_is_not_committable() -> None:
    tracker = OffsetTracker()
    events = dispatcher(Recorder(), tracker)
    await events.submit(P0, 0, Job("quick"), key="A", lane="zuora")
    await events.submit(P0, 1, Job("never", asyncio.Event()), key="B", lane="zuora")
    await events.submit(P0, 2, Job("queued"), key="B", lane="zuora")
    assert not await events.drain(grace_seconds=0.1)
    assert tracker.commit_positions() == {P0: 1}
    assert events.unfinished() == 0


async def test_handing_over_partitions_waits_for_theirs_and_drops_what_has_not_started() -> None:
    tracker, recorder = OffsetTracker(), Recorder()
    events = dispatcher(recorder, tracker)
    stuck, elsewhere = asyncio.Event(), asyncio.Event()
    await events.submit(P0, 0, Job("P0-done"), key="A", lane="zuora")
    await events.submit(P0, 1, Job("P0-stuck", stuck), key="B", lane="zuora")
    await events.submit(P0, 2, Job("P0-queued"), key="B", lane="zuora")
    await events.submit(P1, 0, Job("P1-running", elsewhere), key="C", lane="zuora")
    assert not await events.drain(grace_seconds=0.1, partitions={P0})
    assert events.unfinished({P0}) == 1, "the running one goes on; the queued one is dropped"
    assert events.unfinished({P1}) == 1, "other partitions are untouched"
    stuck.set()
    elsewhere.set()
    assert await events.drain(grace_seconds=5)
    assert ["P0-queued"] not in recorder.groups
    assert tracker.commit_positions() == {P0: 2, P1: 1}


class HangingConsumer:
    """A consumer whose commit waits for a group coordinator that never answers."""

    def __init__(self) -> None:
        self.commits_started = 0

    async def commit(self, offsets: object) -> None:
        self.commits_started += 1
        await asyncio.Event().wait()


async def test_a_commit_the_broker_never_answers_is_counted_as_failed_and_kept_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(intake_module, "COMMIT_TIMEOUT_SECONDS", 0.05)
    tracker, metrics, consumer = OffsetTracker(), Metrics(), HangingConsumer()
    intake = Intake(
        None,  # type: ignore[arg-type]  # committing needs neither processor nor dispatcher
        None,  # type: ignore[arg-type]
        tracker,
        metrics,
        commit_interval_seconds=1,
        rebalance_grace_seconds=1,
    )
    intake.attach(SimpleNamespace(consumer=consumer))  # type: ignore[arg-type]
    tracker.finished(tracker.started(P0, 4))
    await asyncio.wait_for(intake.commit(), 5)
    assert consumer.commits_started == 1
    assert (
        metrics.registry.get_sample_value("regen_offset_commits_total", {"outcome": "failure"}) == 1
    )
    assert tracker.commit_positions() == {P0: 5}, "the position goes with the next commit"
