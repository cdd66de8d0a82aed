"""Commit positions never pass an unfinished event; ordering per key, concurrency across keys;
the committer keeps committing whatever else fails; partitions are handed over cleanly."""

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from fakes import FakeGroupConsumer

from regen_sync.coalescing import SharedCall
from regen_sync.kafka import Committer, Dispatcher, Intake, Offsets, Partition, Ticket
from regen_sync.kafka import committer as committer_module
from regen_sync.observability import Metrics
from regen_sync.resilience import GroupShare

P0 = Partition("input", 0)
P1 = Partition("input", 1)


def owning(*partitions: Partition) -> Offsets:
    offsets = Offsets()
    offsets.assigned(set(partitions))
    return offsets


def start(offsets: Offsets, partition: Partition, offset: int) -> Ticket:
    ticket = offsets.admit(partition, offset, offsets.assignment)
    assert ticket is not None
    return ticket


def test_position_is_the_lowest_unfinished_offset() -> None:
    offsets = owning(P0)
    tickets = [start(offsets, P0, offset) for offset in range(10, 15)]
    for ticket in (tickets[1], tickets[3], tickets[4]):
        offsets.finished(ticket)
    assert offsets.commit_positions() == {P0: 10}
    offsets.finished(tickets[0])
    assert offsets.commit_positions() == {P0: 12}
    offsets.finished(tickets[2])
    assert offsets.commit_positions() == {P0: 15}


def test_only_moved_positions_are_committed_again() -> None:
    offsets = owning(P0, P1)
    offsets.finished(start(offsets, P0, 0))
    offsets.finished(start(offsets, P1, 7))
    positions = offsets.commit_positions()
    assert positions == {P0: 1, P1: 8}
    offsets.committed(positions)
    assert offsets.commit_positions() == {}
    assert offsets.commit_positions(only={P1}) == {}


def test_a_ticket_from_a_revoked_assignment_changes_nothing() -> None:
    offsets = owning(P0)
    stale = start(offsets, P0, 5)
    offsets.revoked({P0})
    offsets.forget({P0})
    offsets.assigned({P0})
    fresh = start(offsets, P0, 5)
    offsets.finished(stale)
    assert offsets.commit_positions() == {P0: 5}
    offsets.finished(fresh)
    assert offsets.commit_positions() == {P0: 6}


def test_a_record_read_before_a_revocation_is_not_admitted() -> None:
    offsets = owning(P0, P1)
    read_under = offsets.assignment
    offsets.revoked({P0})
    assert offsets.admit(P0, 3, read_under) is None
    # P1 is still ours, but the record was read under the assignment before: the rest of
    # its poll is not admitted either, and no unfinished offset holds P1's position back.
    assert offsets.admit(P1, 3, read_under) is None
    assert offsets.commit_positions() == {}
    assert offsets.admit(P1, 3, offsets.assignment) is not None


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


async def submit(
    events: Dispatcher[Any],
    offsets: Offsets,
    partition: Partition,
    offset: int,
    item: Any,
    *,
    key: str | None,
    lane: str = "zuora",
) -> bool:
    """Submit a record read now, under the current assignment."""
    return await events.submit(
        item,
        key=key,
        lane=lane,
        admit=functools.partial(offsets.admit, partition, offset, offsets.assignment),
    )


def dispatcher(recorder: Recorder, offsets: Offsets, max_in_flight: int = 10) -> Dispatcher[Job]:
    return Dispatcher(
        offsets.finished,
        Metrics(),
        max_in_flight=max_in_flight,
        handle=recorder.handle,
        merge_key=lambda job: job.merge,
    )


async def test_same_key_runs_in_order_and_other_keys_overtake() -> None:
    offsets, recorder = owning(P0, P1), Recorder()
    events = dispatcher(recorder, offsets)
    release_first = asyncio.Event()
    await submit(events, offsets, P0, 0, Job("A1", release_first), key="A")
    await submit(events, offsets, P0, 1, Job("A2"), key="A")
    await submit(events, offsets, P0, 2, Job("B1"), key="B")
    await asyncio.wait_for(recorder.ended.wait(), 5)
    assert recorder.log == ["start A1", "start B1", "end B1"]
    assert offsets.commit_positions() == {P0: 0}
    release_first.set()
    assert await events.drain(grace_seconds=5)
    assert recorder.log[3:] == ["end A1", "start A2", "end A2"]
    assert offsets.commit_positions() == {P0: 3}


async def test_waiting_events_with_the_same_merge_key_run_as_one_group() -> None:
    offsets, recorder = owning(P0, P1), Recorder()
    events = dispatcher(recorder, offsets)
    release_first = asyncio.Event()
    await submit(events, offsets, P0, 0, Job("A1", release_first, merge="x"), key="A")
    await submit(events, offsets, P1, 0, Job("B1"), key="B")
    await asyncio.wait_for(recorder.ended.wait(), 5)  # B1 ran, so A1 has started too
    for offset, (name, merge) in enumerate(
        [("A2", "x"), ("A3", "x"), ("A4", "y"), ("A5", "x")], start=1
    ):
        await submit(events, offsets, P0, offset, Job(name, merge=merge), key="A")
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

    offsets = owning(P0)
    events = Dispatcher(
        offsets.finished, Metrics(), max_in_flight=10, handle=handle, merge_key=lambda j: j.merge
    )
    await submit(events, offsets, P0, 0, Job("A1", asyncio.Event(), merge="x"), key="A")
    await submit(events, offsets, P0, 1, Job("A2", merge="x"), key="A")
    await submit(events, offsets, P0, 2, Job("A3", merge="x"), key="A")
    call_may_go_out.set()
    await asyncio.wait_for(call_went_out.wait(), 5)
    await submit(events, offsets, P0, 3, Job("A4", merge="x"), key="A")
    finish.set()
    assert await events.drain(grace_seconds=5)
    assert groups == [["A1", "A2", "A3"], ["A4"]]


async def test_a_shared_call_never_closed_serves_its_first_event_alone() -> None:
    seen: list[Job] = []

    async def handle(group: SharedCall[Job]) -> None:
        seen.append(group.first)  # decided without a call: never closed

    offsets = owning(P0)
    events = Dispatcher(
        offsets.finished, Metrics(), max_in_flight=10, handle=handle, merge_key=lambda j: j.merge
    )
    for offset in range(3):
        await submit(events, offsets, P0, offset, Job(f"A{offset}", merge="x"), key="A")
    assert await events.drain(grace_seconds=5)
    assert [job.name for job in seen] == ["A0", "A1", "A2"]
    assert offsets.commit_positions() == {P0: 3}


async def test_a_full_window_holds_the_consume_loop_back_for_its_lane_only() -> None:
    offsets = owning(P0, P1)
    events = dispatcher(Recorder(), offsets, max_in_flight=2)
    gate = asyncio.Event()
    await submit(events, offsets, P0, 0, Job("A", gate), key="A")
    await submit(events, offsets, P0, 1, Job("B", gate), key="B")
    third = asyncio.create_task(submit(events, offsets, P0, 2, Job("C", gate), key="C"))
    await asyncio.sleep(0.05)
    assert not third.done()
    # The other upstream's lane has room of its own.
    await asyncio.wait_for(submit(events, offsets, P1, 0, Job("J"), key="J", lane="softwareone"), 1)
    gate.set()
    await asyncio.wait_for(third, 5)
    assert await events.drain(grace_seconds=5)


async def test_work_cut_off_by_shutdown_is_not_committable() -> None:
    offsets = owning(P0, P1)
    events = dispatcher(Recorder(), offsets)
    await submit(events, offsets, P0, 0, Job("quick"), key="A")
    await submit(events, offsets, P0, 1, Job("never", asyncio.Event()), key="B")
    await submit(events, offsets, P0, 2, Job("queued"), key="B")
    assert not await events.drain(grace_seconds=0.1)
    assert offsets.commit_positions() == {P0: 1}
    assert events.unfinished() == 0


async def test_handing_over_waits_for_its_partitions_then_cancels_what_is_left_of_them() -> None:
    offsets, recorder = owning(P0, P1), Recorder()
    events = dispatcher(recorder, offsets)
    stuck, elsewhere = asyncio.Event(), asyncio.Event()
    await submit(events, offsets, P0, 0, Job("P0-done"), key="A")
    await submit(events, offsets, P0, 1, Job("P0-stuck", stuck), key="B")
    await submit(events, offsets, P0, 2, Job("P0-queued"), key="B")
    await submit(events, offsets, P1, 0, Job("P1-queued-behind-P0"), key="B")
    await submit(events, offsets, P1, 1, Job("P1-running", elsewhere), key="C")
    assert not await events.drain(grace_seconds=0.1, partitions={P0})
    assert events.unfinished({P0}) == 0, "the running one is cancelled, the queued one dropped"
    assert "end P0-stuck" not in recorder.log, "no result of a handed-over partition"
    elsewhere.set()
    assert await events.drain(grace_seconds=5)
    assert ["P0-queued"] not in recorder.groups
    # The object's worker went on with the next event of a partition still owned.
    assert ["P1-queued-behind-P0"] in recorder.groups
    assert offsets.commit_positions() == {P0: 1, P1: 2}


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
    offsets = owning(P0, P1)
    recorder = PublishingRecorder()
    events = dispatcher(recorder, offsets)
    hold = asyncio.Event()
    blocker = asyncio.Event()
    # Three identical events of one object, waiting behind a first one: served as one group.
    await submit(events, offsets, P0, 0, Job("first", blocker), key="A")
    await submit(events, offsets, P0, 1, Job("a", merge="x"), key="A")
    await submit(events, offsets, P0, 2, Job("b", hold, merge="x"), key="A")
    blocker.set()
    await asyncio.sleep(0.05)
    assert not await events.drain(grace_seconds=0.1, partitions={P0})
    assert recorder.log == ["published first", "published a"]
    assert offsets.commit_positions() == {P0: 2}, "'a' is out, so its offset is committed"


async def test_an_event_waiting_for_room_is_not_started_once_its_partition_is_gone() -> None:
    offsets = owning(P0, P1)
    events = dispatcher(Recorder(), offsets, max_in_flight=1)
    hold = asyncio.Event()
    await submit(events, offsets, P0, 0, Job("running", hold), key="A")
    waiting = asyncio.create_task(submit(events, offsets, P0, 1, Job("late"), key="B"))
    await asyncio.sleep(0.01)
    offsets.revoked({P0})
    hold.set()
    assert await asyncio.wait_for(waiting, 1) is False
    assert await events.drain(grace_seconds=5)
    assert offsets.commit_positions() == {P0: 1}


# --- the committer ------------------------------------------------------------------------------


@dataclass
class Committing:
    committer: Committer
    consumer: FakeGroupConsumer
    offsets: Offsets
    metrics: Metrics

    def lag(self, partition: Partition) -> float | None:
        return self.metrics.registry.get_sample_value(
            "regen_consumer_lag", {"topic": "input", "partition": str(partition.partition)}
        )


def committing(*owned: Partition, interval: float = 0.01) -> Committing:
    consumer, offsets, metrics = FakeGroupConsumer(), owning(*owned), Metrics()
    consumer.assigned = {TopicPartition(*partition) for partition in owned}
    committer = Committer(lambda: consumer, offsets, metrics, interval_seconds=interval)
    return Committing(committer, consumer, offsets, metrics)


async def test_a_commit_the_broker_never_answers_is_counted_as_failed_and_kept_pending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(committer_module, "COMMIT_TIMEOUT_SECONDS", 0.05)
    it = committing(P0)
    it.consumer.hang_commits = True
    it.offsets.finished(start(it.offsets, P0, 4))
    await asyncio.wait_for(it.committer.commit(), 5)
    assert it.consumer.commits == []
    assert (
        it.metrics.registry.get_sample_value("regen_offset_commits_total", {"outcome": "failure"})
        == 1
    )
    assert it.offsets.commit_positions() == {P0: 5}, "the position goes with the next commit"


async def test_commits_go_on_when_the_lag_report_fails() -> None:
    it = committing(P0)
    it.consumer.highwater_raises = True
    await it.committer.start()
    for offset in range(3):
        it.consumer.commit_answered.clear()
        it.offsets.finished(start(it.offsets, P0, offset))
        # Each offset is committed by the periodic loop, after failed lag reports before it.
        await asyncio.wait_for(it.consumer.commit_answered.wait(), 5)
    assert it.consumer.commits[-1] == {TopicPartition(*P0): 3}
    await it.committer.stop()


async def test_stopping_commits_what_finished_since_the_last_periodic_commit() -> None:
    it = committing(P0, interval=3600)
    await it.committer.start()
    for offset in range(2):
        it.offsets.finished(start(it.offsets, P0, offset))
    await asyncio.wait_for(it.committer.stop(), 5)
    assert it.consumer.commits == [{TopicPartition(*P0): 2}]


async def test_consumer_lag_is_exported_for_every_owned_partition_idle_ones_included() -> None:
    it = committing(P0, P1)
    it.consumer.high_watermarks[TopicPartition(*P0)] = 10
    # P1 was never fetched from: its end is asked of the broker, and, as this process has
    # committed nothing of it, its committed offset of the group.
    it.consumer.end[TopicPartition(*P1)] = 7
    it.consumer.group_committed[TopicPartition(*P1)] = 3
    await it.committer.report_lag()
    assert (it.lag(P0), it.lag(P1)) == (10, 4)
    it.offsets.finished(start(it.offsets, P0, 0))
    await it.committer.commit()
    await it.committer.report_lag()
    assert (it.lag(P0), it.lag(P1)) == (9, 4)
    it.offsets.revoked({P0, P1})
    it.committer.forget({P0, P1})
    assert (it.lag(P0), it.lag(P1)) == (None, None), "a revoked partition is its next owner's"
    await it.committer.report_lag()
    assert (it.lag(P0), it.lag(P1)) == (None, None), "and is never reported again"


# --- the intake ---------------------------------------------------------------------------------


def read_as_its_own_object(record: Any) -> SimpleNamespace:
    """Stands in for EventProcessor.read: every record is an event of its own object."""
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
class Intaken(Committing):
    intake: Intake
    dispatcher: Dispatcher[Any]
    share: GroupShare


def intake_over(
    *owned: Partition,
    handle: Callable[[SharedCall[Any]], Awaitable[None]],
    max_in_flight: int = 10,
) -> Intaken:
    it = committing(interval=3600)
    share = GroupShare()
    events = Dispatcher(it.offsets.finished, it.metrics, max_in_flight=max_in_flight, handle=handle)
    intake = Intake(
        read_as_its_own_object,  # type: ignore[arg-type]
        events,
        it.offsets,
        it.committer,
        lambda: it.consumer,
        it.metrics,
        share,
        rebalance_grace_seconds=0.1,
    )
    it.consumer.assigned = {TopicPartition(*partition) for partition in owned}
    intake.assigned(set(owned))
    return Intaken(it.committer, it.consumer, it.offsets, it.metrics, intake, events, share)


async def test_a_hand_over_commits_what_finished_and_cancels_the_rest() -> None:
    second_running = asyncio.Event()

    async def handle(group: SharedCall[Any]) -> None:
        if group.first.name == "0/1":
            second_running.set()
            await asyncio.Event().wait()  # until cancelled

    it = intake_over(P0, P1, handle=handle)
    await it.intake.on_records(poll(P0, 0, 1))  # type: ignore[arg-type]
    # 0/0's task ran to its end before 0/1's first step.
    await asyncio.wait_for(second_running.wait(), 5)
    await it.intake.hand_over({P0})
    assert it.consumer.commits == [{TopicPartition(*P0): 1}], "0/0 finished before P0 went"
    assert it.dispatcher.unfinished() == 0, "0/1 is cancelled, for the next owner"
    assert it.offsets.owned == {P1}
    assert it.offsets.commit_positions() == {}, "nothing of P0 is kept"


async def test_the_rest_of_a_poll_is_not_admitted_once_its_partition_is_revoked() -> None:
    first_running, held = asyncio.Event(), asyncio.Event()

    async def hold_the_first(group: SharedCall[Any]) -> None:
        first_running.set()
        await held.wait()

    it = intake_over(P0, handle=hold_the_first, max_in_flight=1)
    reading = asyncio.create_task(it.intake.on_records(poll(P0, 0, 1, 2)))  # type: ignore[arg-type]
    await first_running.wait()
    # The poll waits for room behind offset 0 when the group takes P0 away.
    await it.intake.hand_over({P0})
    await asyncio.wait_for(reading, 1)
    assert it.dispatcher.unfinished() == 0
    assert all(commit == {TopicPartition(*P0): 0} for commit in it.consumer.commits), (
        "nothing of P0 finished"
    )
    # P0 comes back: reading restarts from the committed offset, and is admitted again.
    it.intake.assigned({P0})
    held.set()
    await it.intake.on_records(poll(P0, 0))  # type: ignore[arg-type]
    assert it.offsets.commit_positions() in ({P0: 0}, {P0: 1})


async def test_the_rest_of_a_poll_is_not_admitted_once_stopping_begins() -> None:
    handled: list[str] = []
    first_running, held = asyncio.Event(), asyncio.Event()

    async def hold_the_first(group: SharedCall[Any]) -> None:
        handled.append(group.first.name)
        first_running.set()
        await held.wait()

    it = intake_over(P0, handle=hold_the_first, max_in_flight=1)
    reading = asyncio.create_task(it.intake.on_records(poll(P0, 0, 1, 2)))  # type: ignore[arg-type]
    await first_running.wait()
    # SIGTERM while the poll waits for room behind offset 0; offset 0 then finishes.
    stopping = asyncio.create_task(it.intake.stop(grace_seconds=5))
    await asyncio.sleep(0)
    held.set()
    await asyncio.wait_for(stopping, 1)
    await asyncio.wait_for(reading, 1)
    assert handled == ["0/0"], "offsets 1 and 2 are the next owner's: not started after the stop"
    assert it.dispatcher.unfinished() == 0
    await it.committer.stop()
    assert it.consumer.commits[-1] == {TopicPartition(*P0): 1}


async def test_each_assignment_sets_the_replicas_share_of_the_upstream_budget() -> None:
    async def handle(group: SharedCall[Any]) -> None:
        pass

    it = intake_over(P0, P1, handle=handle)
    assert (it.share.assigned, it.share.total) == (2, 6)
    assert it.metrics.registry.get_sample_value("regen_partitions_assigned") == 2
    await it.intake.hand_over({P0, P1})
    assert it.share.assigned == 0
    it.intake.assigned({P0, P1, Partition("input", 2)})
    assert (it.share.assigned, it.share.total) == (3, 6)


async def test_stopping_pauses_reading_and_drains_in_flight_events() -> None:
    release = asyncio.Event()

    async def handle(group: SharedCall[Any]) -> None:
        await release.wait()

    it = intake_over(P0, handle=handle)
    await it.intake.on_records(poll(P0, 0))  # type: ignore[arg-type]
    stopping = asyncio.create_task(it.intake.stop(grace_seconds=5))
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert it.consumer.paused == {TopicPartition(*P0)}
    assert it.offsets.commit_positions() == {P0: 1}, "finished in the grace period"
