"""Fakes shared by the tests (imported as ``from fakes import ...``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from regen_sync.domain import FailureReason, RegenerationFailed, ResultEvent
from regen_sync.observability import Tracing
from regen_sync.processing import InputRecord, PendingEvent, RecordRefused


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
