"""Test doubles and builders shared by the test modules (``from fakes import ...``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from aiokafka import TopicPartition

from regen_sync.config import CircuitSettings, ProcessingSettings, UpstreamHttpSettings
from regen_sync.domain import (
    FailureReason,
    RegenerationFailed,
    RegenerationTask,
    ResultEvent,
    Upstream,
    parse_event,
    plan,
)
from regen_sync.domain.parsing import InvalidEvent
from regen_sync.observability import Metrics, Tracing
from regen_sync.processing import InputRecord, PendingEvent, RecordRefused
from regen_sync.regeneration import Regenerator
from regen_sync.resilience import GroupShare, UpstreamGate
from regen_sync.upstream import UpstreamClient

Item = TypeVar("Item")


class Clock:
    """A hand-driven clock for code that takes ``clock: Callable[[], float]``: it reads
    ``now``, which only the test moves (``clock.now += 5`` or ``clock.now = 10.0``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def planned_task(event_type: str, data: dict[str, object], event_id: str) -> RegenerationTask:
    """The task the service plans for a valid CloudEvent of ``event_type`` carrying ``data``."""
    raw = json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "s", "type": event_type, "data": data}
    ).encode()
    event = parse_event(raw, max_bytes=10_000)
    assert not isinstance(event, InvalidEvent)
    return plan(event)


def journal_task(journal_id: str) -> RegenerationTask:
    """A SoftwareOne journal regeneration; the event id is the journal id."""
    return planned_task("journal.fixed", {"journalId": journal_id}, journal_id)


def softwareone_regenerator(
    upstream: UpstreamClient,
    *,
    max_concurrency: int = 10,
    circuit: CircuitSettings | None = None,
    metrics: Metrics | None = None,
    **settings: object,
) -> Regenerator:
    """A Regenerator for SoftwareOne tasks with short backoffs; ``settings`` are
    ProcessingSettings fields."""
    processing = ProcessingSettings.model_validate(
        {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02} | settings
    )
    metrics = metrics or Metrics()
    gate = UpstreamGate(
        Upstream.SOFTWAREONE,
        UpstreamHttpSettings(max_concurrency=max_concurrency),
        circuit or CircuitSettings(),
        metrics,
        max_pause_seconds=processing.max_retry_after_seconds,
        share=GroupShare.whole(),
    )
    return Regenerator(
        {Upstream.SOFTWAREONE: upstream}, {Upstream.SOFTWAREONE: gate}, processing, metrics
    )


class CountingSharedCall(Generic[Item]):
    """A shared call serving its first item alone, counting how often it was closed."""

    def __init__(self, first: Item) -> None:
        self._first = first
        self.closed = 0
        self.finished_items: list[Item] = []

    @property
    def first(self) -> Item:
        return self._first

    def close(self) -> Sequence[Item]:
        self.closed += 1
        return [self._first]

    def finished(self, item: Item) -> None:
        self.finished_items.append(item)


class MemorySink:
    """Keeps what was published, in order; ``refuse_succeeded``, ``refuse_dead_letters`` and
    ``fail_once`` script publish errors; ``hold`` makes a publication wait once it has begun.
    With ``tracing``, each result's publication is a span, as with the Kafka sink."""

    def __init__(self, tracing: Tracing | None = None) -> None:
        self.tracing = tracing or Tracing.disabled()
        self.results: list[ResultEvent] = []
        self.dead_letters: list[tuple[int, FailureReason]] = []
        self.published: list[str] = []
        """Every record that went out, in order: "result E1", "dead letter 7", ..."""
        self.attempts: list[str] = []
        """Every attempt at a result, by source event id, including the failed ones."""
        self.refuse_succeeded = False
        self.refuse_dead_letters = False
        self.fail_once: set[str] = set()
        self.hold: asyncio.Event | None = None
        """When set, a publication waits for it (it has begun: ``publishing`` is set)."""
        self.publishing = asyncio.Event()

    async def publish_result(self, record: InputRecord, event: ResultEvent) -> None:
        with self.tracing.publication("results"):
            self.attempts.append(str(event.data.sourceEventId))
            self.publishing.set()
            if self.hold is not None:
                await self.hold.wait()
            if event.type == "regeneration.succeeded" and self.refuse_succeeded:
                raise RecordRefused("too large")
            if event.data.sourceEventId in self.fail_once:
                self.fail_once.discard(event.data.sourceEventId)
                raise ValueError("a bug on the way out")
            self.results.append(event)
            self.published.append(f"result {event.data.sourceEventId}")

    async def dead_letter(self, record: InputRecord, failed: RegenerationFailed) -> None:
        if self.refuse_dead_letters:
            raise RecordRefused("the dead letter is too large")
        self.dead_letters.append((record.offset, failed.data.reason))
        self.published.append(f"dead letter {record.offset}")


@dataclass
class WaitingEvents:
    """A shared call whose identical events are all waiting when the call goes out."""

    events: list[PendingEvent]
    finished_events: list[PendingEvent] = field(default_factory=list)

    @property
    def first(self) -> PendingEvent:
        return self.events[0]

    def close(self) -> list[PendingEvent]:
        return self.events

    def finished(self, item: PendingEvent) -> None:
        self.finished_events.append(item)


class FakeGroupConsumer:
    """The parts of aiokafka's consumer that the intake and the committer use, as a member of
    a consumer group, with the state a test sets."""

    def __init__(self, partitions: int = 6) -> None:
        self.assigned: set[TopicPartition] = set()
        self.high_watermarks: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.group_committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_answered = asyncio.Event()
        self.paused: set[TopicPartition] = set()
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
        return self.group_committed.get(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.hang_commits:
            await asyncio.Event().wait()
        self.commits.append(offsets)
        self.group_committed |= offsets
        self.commit_answered.set()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)
