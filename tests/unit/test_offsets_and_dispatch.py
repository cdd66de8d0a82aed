"""Commit positions never pass an unfinished event; ordering per key, concurrency across keys."""

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition

from regen_sync.coalescing import SharedCall
from regen_sync.kafka import Dispatcher, Intake, OffsetTracker, Partition
from regen_sync.kafka import intake as intake_module
from regen_sync.observability import Metrics
from regen_sync.resilience import GroupShare

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

    async def handle(self, group: SharedCall[Job]) -> None:
        # Closed at once, as if its upstream call went out at the start.
        names = [job.name for job in group.close()]
        self.groups.append(names)
        self.log.append(f"start {'+'.join(names)}")
        for job in group.close():
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

    async def handle(group: SharedCall[Job]) -> None:
        if group.first.gate is not None:  # the first call waits for its upstream slot
            await call_may_go_out.wait()
        groups.append([job.name for job in group.close()])
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


async def test_a_shared_call_never_closed_serves_its_first_event_alone() -> None:
    seen: list[Job] = []

    async def handle(group: SharedCall[Job]) -> None:
        seen.append(group.first)  # decided without a call: never closed

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


async def test_handing_over_waits_for_its_partitions_then_cancels_what_is_left_of_them() -> None:
    tracker, recorder = OffsetTracker(), Recorder()
    events = dispatcher(recorder, tracker)
    stuck, elsewhere = asyncio.Event(), asyncio.Event()
    await events.submit(P0, 0, Job("P0-done"), key="A", lane="zuora")
    await events.submit(P0, 1, Job("P0-stuck", stuck), key="B", lane="zuora")
    await events.submit(P0, 2, Job("P0-queued"), key="B", lane="zuora")
    await events.submit(P1, 0, Job("P1-queued-behind-P0"), key="B", lane="zuora")
    await events.submit(P1, 1, Job("P1-running", elsewhere), key="C", lane="zuora")
    assert not await events.drain(grace_seconds=0.1, partitions={P0})
    assert events.unfinished({P0}) == 0, "the running one is cancelled, the queued one dropped"
    assert "end P0-stuck" not in recorder.log, "no result of a handed-over partition"
    elsewhere.set()
    assert await events.drain(grace_seconds=5)
    assert ["P0-queued"] not in recorder.groups
    # The object's worker went on with the next event of a partition still owned.
    assert ["P1-queued-behind-P0"] in recorder.groups
    assert tracker.commit_positions() == {P0: 1, P1: 2}


class PublishingRecorder(Recorder):
    """Publishes each job's result as it goes: the first at once, the next after its gate."""

    async def handle(self, group: SharedCall[Job]) -> None:
        jobs = group.close()
        for job in jobs:
            if job.gate is not None:
                await job.gate.wait()
            self.log.append(f"published {job.name}")
            group.finished(job)


async def test_a_result_already_published_counts_when_the_rest_of_its_group_is_cancelled() -> None:
    tracker = OffsetTracker()
    recorder = PublishingRecorder()
    events = dispatcher(recorder, tracker)
    hold = asyncio.Event()
    blocker = asyncio.Event()
    # Three identical events of one object, waiting behind a first one: served as one group.
    await events.submit(P0, 0, Job("first", blocker), key="A", lane="zuora")
    await events.submit(P0, 1, Job("a", merge="x"), key="A", lane="zuora")
    await events.submit(P0, 2, Job("b", hold, merge="x"), key="A", lane="zuora")
    blocker.set()
    await asyncio.sleep(0.05)
    assert not await events.drain(grace_seconds=0.1, partitions={P0})
    assert recorder.log == ["published first", "published a"]
    assert tracker.commit_positions() == {P0: 2}, "'a' is out, so its offset is committed"


async def test_an_event_waiting_for_room_is_not_started_once_its_partition_is_gone() -> None:
    tracker = OffsetTracker()
    events = dispatcher(Recorder(), tracker, max_in_flight=1)
    hold = asyncio.Event()
    await events.submit(P0, 0, Job("running", hold), key="A", lane="zuora")
    owned = True
    waiting = asyncio.create_task(
        events.submit(P0, 1, Job("late"), key="B", lane="zuora", still_wanted=lambda: owned)
    )
    await asyncio.sleep(0.01)
    owned = False
    hold.set()
    assert await asyncio.wait_for(waiting, 1) is False
    assert await events.drain(grace_seconds=5)
    assert tracker.commit_positions() == {P0: 1}


class FakeConsumer:
    """The parts of aiokafka's consumer that Intake uses, with the state a test sets."""

    def __init__(self, partitions: int = 6) -> None:
        self.assigned: set[TopicPartition] = set()
        self.high_watermarks: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_answered = asyncio.Event()
        self.partitions = partitions
        self.hang_commits = False
        self.highwater_raises = False

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        if self.highwater_raises:
            # What aiokafka raised when the assignment changed under the lag report.
            raise AssertionError("Partition is not assigned")
        return self.high_watermarks.get(tp)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end.get(tp, 0) for tp in tps}

    async def committed(self, tp: TopicPartition) -> int | None:
        return None

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.hang_commits:
            await asyncio.Event().wait()
        self.commits.append(offsets)
        self.commit_answered.set()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def pause(self, *tps: TopicPartition) -> None:
        pass


class ReadingProcessor:
    """Stands in for EventProcessor.read: every record is an event of its own object."""

    def read(self, record: Any) -> SimpleNamespace:
        name = f"{record.partition}/{record.offset}"
        return SimpleNamespace(name=name, gate=None, ordering_key=name, lane="zuora")


def poll(partition: Partition, *offsets: int) -> SimpleNamespace:
    """One poll's records, as the batch subscriber hands them over."""
    return SimpleNamespace(
        raw_message=tuple(
            SimpleNamespace(
                topic=partition.topic,
                partition=partition.partition,
                offset=offset,
                key=None,
                value=b"{}",
                headers=(),
            )
            for offset in offsets
        )
    )


@dataclass
class Intaken:
    intake: Intake
    consumer: FakeConsumer
    tracker: OffsetTracker
    metrics: Metrics
    recorder: Recorder
    share: GroupShare


def intake_over(
    *owned: Partition, max_in_flight: int = 10, commit_interval: float = 0.01
) -> Intaken:
    tracker, metrics, recorder, consumer = OffsetTracker(), Metrics(), Recorder(), FakeConsumer()
    share = GroupShare()
    intake = Intake(
        ReadingProcessor(),  # type: ignore[arg-type]
        Dispatcher(tracker, metrics, max_in_flight=max_in_flight, handle=recorder.handle),
        tracker,
        metrics,
        share,
        commit_interval_seconds=commit_interval,
        rebalance_grace_seconds=0.1,
    )
    intake.attach(SimpleNamespace(consumer=consumer))  # type: ignore[arg-type]
    consumer.assigned = {TopicPartition(*partition) for partition in owned}
    intake.assigned(set(owned))
    return Intaken(intake, consumer, tracker, metrics, recorder, share)


async def test_a_commit_the_broker_never_answers_is_counted_as_failed_and_kept_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(intake_module, "COMMIT_TIMEOUT_SECONDS", 0.05)
    it = intake_over(P0)
    it.consumer.hang_commits = True
    it.tracker.finished(it.tracker.started(P0, 4))
    await asyncio.wait_for(it.intake.commit(), 5)
    assert it.consumer.commits == []
    assert (
        it.metrics.registry.get_sample_value("regen_offset_commits_total", {"outcome": "failure"})
        == 1
    )
    assert it.tracker.commit_positions() == {P0: 5}, "the position goes with the next commit"


async def test_commits_go_on_when_the_lag_report_fails_and_stop_commits_what_finished() -> None:
    it = intake_over(P0)
    it.consumer.highwater_raises = True
    it.intake.start_committing()
    for offset in range(3):
        it.consumer.commit_answered.clear()
        await it.intake.on_records(poll(P0, offset))  # type: ignore[arg-type]
        # Each record is committed by the periodic loop, after failed lag reports before it.
        await asyncio.wait_for(it.consumer.commit_answered.wait(), 5)
    assert it.consumer.commits[-1] == {TopicPartition("input", 0): 3}
    await it.intake.on_records(poll(P0, 3))  # type: ignore[arg-type]
    await asyncio.wait_for(it.intake.stop(grace_seconds=5), 5)
    assert it.consumer.commits[-1] == {TopicPartition("input", 0): 4}


async def test_consumer_lag_is_exported_for_every_owned_partition_idle_ones_included() -> None:
    it = intake_over(P0, P1)
    it.consumer.high_watermarks[TopicPartition(*P0)] = 10
    it.consumer.end[TopicPartition(*P1)] = 0  # never fetched from: the broker is asked
    it.intake.start_committing()

    def lag(partition: Partition) -> float | None:
        return it.metrics.registry.get_sample_value(
            "regen_consumer_lag", {"topic": "input", "partition": str(partition.partition)}
        )

    for _ in range(100):
        if lag(P0) is not None and lag(P1) is not None:
            break
        await asyncio.sleep(0.01)
    assert (lag(P0), lag(P1)) == (10, 0)
    await it.intake.hand_over({P0, P1})
    assert (lag(P0), lag(P1)) == (None, None), "a revoked partition is its next owner's to report"
    await it.intake.stop(grace_seconds=1)


async def test_the_rest_of_a_poll_is_not_admitted_once_its_partition_is_revoked() -> None:
    it = intake_over(P0, max_in_flight=1)
    first_running = asyncio.Event()
    held = asyncio.Event()

    async def hold_the_first(group: SharedCall[Any]) -> None:
        first_running.set()
        await held.wait()

    it.intake._dispatcher._handle = hold_the_first  # type: ignore[attr-defined]
    reading = asyncio.create_task(it.intake.on_records(poll(P0, 0, 1, 2)))  # type: ignore[arg-type]
    await first_running.wait()
    # The poll waits for room behind offset 0 when the group takes P0 away.
    await it.intake.hand_over({P0})
    await asyncio.wait_for(reading, 1)
    assert it.intake._dispatcher.unfinished() == 0  # type: ignore[attr-defined]
    assert all(commit == {TopicPartition(*P0): 0} for commit in it.consumer.commits), (
        "nothing of P0 finished"
    )
    # P0 comes back: reading restarts from the committed offset, and is admitted again.
    it.intake.assigned({P0})
    held.set()
    await it.intake.on_records(poll(P0, 0))  # type: ignore[arg-type]
    assert it.tracker.commit_positions() in ({P0: 0}, {P0: 1})


async def test_each_assignment_sets_the_replicas_share_of_the_upstream_budget() -> None:
    it = intake_over(P0, P1)
    assert (it.share.assigned, it.share.total) == (2, 6)
    assert it.metrics.registry.get_sample_value("regen_partitions_assigned") == 2
    await it.intake.hand_over({P0, P1})
    assert it.share.assigned == 0
    it.intake.assigned({P0, P1, Partition("input", 2)})
    assert (it.share.assigned, it.share.total) == (3, 6)
