"""One result per event, whatever goes wrong: coalesced groups, raising handlers, refused
records. In memory: the sink and the regenerator are fakes; the integration suite runs the
same paths against the real broker."""

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from regen_sync import processing
from regen_sync.coalescing import SharedCall
from regen_sync.domain import (
    Failed,
    FailureReason,
    Outcome,
    RegenerationTask,
    ResultEvent,
    Succeeded,
)
from regen_sync.observability import Metrics
from regen_sync.processing import (
    REDRIVE_HEADER,
    EventProcessor,
    InputRecord,
    PendingEvent,
    RecordRefused,
)


def record(offset: int, value: object) -> InputRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return InputRecord("input", 0, offset, b"key", raw, ())


def journal_event(event_id: str, journal_id: str = "BJO-1") -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "test",
        "type": "journal.fixed",
        "data": {"journalId": journal_id},
    }


class CountingRegenerator:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def regenerate(
        self, task: RegenerationTask, *, shared_call: SharedCall[Any] | None = None
    ) -> Outcome:
        if shared_call is not None:
            shared_call.close()
        self.calls.append(task.event.id)
        return Outcome(Succeeded({"journalId": "BJO-1"}), attempts=1)


@dataclass
class WaitingEvents:
    """A group whose identical events are all waiting when the call goes out."""

    events: list[PendingEvent]
    finished_events: list[PendingEvent] = field(default_factory=list)

    @property
    def first(self) -> PendingEvent:
        return self.events[0]

    def seal(self) -> list[PendingEvent]:
        return self.events

    def finished(self, event: PendingEvent) -> None:
        self.finished_events.append(event)


class MemorySink:
    """Keeps what was published; ``refuse`` / ``fail_once`` script publish errors."""

    def __init__(self) -> None:
        self.results: list[ResultEvent] = []
        self.dead_letters: list[tuple[int, Failed]] = []
        self.refuse_succeeded = False
        self.fail_once: set[str] = set()
        self.hold: asyncio.Event | None = None
        """When set, a publication waits for it (it has begun: `publishing` is set)."""
        self.publishing = asyncio.Event()

    async def publish_result(self, record: InputRecord, event: ResultEvent) -> None:
        self.publishing.set()
        if self.hold is not None:
            await self.hold.wait()
        if event.type == "regeneration.succeeded" and self.refuse_succeeded:
            raise RecordRefused("too large")
        if event.data.sourceEventId in self.fail_once:
            self.fail_once.discard(event.data.sourceEventId)
            raise ValueError("a bug on the way out")
        self.results.append(event)

    async def dead_letter(self, record: InputRecord, failure: Failed) -> None:
        self.dead_letters.append((record.offset, failure))


def processor(sink: MemorySink, regenerator: CountingRegenerator) -> EventProcessor:
    return EventProcessor(
        regenerator,  # type: ignore[arg-type]
        sink,
        Metrics(),
        event_source="urn:test",
        max_event_bytes=10_000,
        max_handling_attempts=3,
    )


async def test_a_coalesced_group_makes_one_call_and_gets_one_result_per_event() -> None:
    sink, regenerator = MemorySink(), CountingRegenerator()
    events = processor(sink, regenerator)
    group = [events.read(record(n, journal_event(f"E{n}"))) for n in range(3)]
    assert len({pending.coalescing_key for pending in group}) == 1
    waiting = WaitingEvents(group)
    await events.complete(waiting)
    assert regenerator.calls == ["E0"]
    assert [r.data.sourceEventId for r in sink.results] == ["E0", "E1", "E2"]
    assert waiting.finished_events == group, "each reported finished once, as published"
    assert {r.data.servedByEventId for r in sink.results} == {"E0"}
    assert len({r.id for r in sink.results}) == 3


async def test_a_result_on_its_way_out_is_published_and_counted_when_its_event_is_cancelled() -> (
    None
):
    sink, regenerator = MemorySink(), CountingRegenerator()
    events = processor(sink, regenerator)
    sink.hold = asyncio.Event()
    waiting = WaitingEvents([events.read(record(n, journal_event(f"E{n}"))) for n in range(2)])
    handling = asyncio.create_task(events.complete(waiting))
    await sink.publishing.wait()
    handling.cancel()  # a hand-over, while E0's result is being published
    await asyncio.sleep(0.01)
    assert not handling.done(), "the cancellation waits for the publication it interrupted"
    sink.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await handling
    assert [r.data.sourceEventId for r in sink.results] == ["E0"]
    assert waiting.finished_events == waiting.events[:1], "E0 is out, E1 is read again"


def test_different_flags_or_objects_never_share_a_coalescing_key() -> None:
    events = processor(MemorySink(), CountingRegenerator())
    keys = {
        events.read(record(0, journal_event("A", "BJO-1"))).coalescing_key,
        events.read(record(1, journal_event("B", "BJO-2"))).coalescing_key,
        events.read(
            record(
                2,
                journal_event("C", "BJO-1")
                | {"data": {"journalId": "BJO-1", "journal": {"notes": "x"}}},
            )
        ).coalescing_key,
    }
    assert len(keys) == 3


async def test_a_raising_publish_is_tried_again_without_duplicating_published_results() -> None:
    sink, regenerator = MemorySink(), CountingRegenerator()
    events = processor(sink, regenerator)
    group = [events.read(record(n, journal_event(f"E{n}"))) for n in range(3)]
    sink.fail_once = {"E1"}
    await events.complete(WaitingEvents(group))
    assert regenerator.calls == ["E0"], "the upstream call is not repeated"
    assert [r.data.sourceEventId for r in sink.results] == ["E0", "E1", "E2"]


async def test_a_result_the_broker_refuses_ends_as_internal_error_with_a_dead_letter() -> None:
    sink, regenerator = MemorySink(), CountingRegenerator()
    sink.refuse_succeeded = True
    events = processor(sink, regenerator)
    await events.complete(WaitingEvents([events.read(record(7, journal_event("E7")))]))
    [result] = sink.results
    assert result.type == "regeneration.failed"
    assert result.data.reason is FailureReason.INTERNAL_ERROR  # type: ignore[union-attr]
    assert result.data.sourceEventId == "E7"
    assert [(offset, failure.reason) for offset, failure in sink.dead_letters] == [
        (7, FailureReason.INTERNAL_ERROR)
    ]


async def test_a_record_whose_reading_raises_still_gets_its_failed_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_parser(raw: bytes | None, *, max_bytes: int) -> None:
        raise RecursionError("parser bug")

    monkeypatch.setattr(processing, "parse_event", broken_parser)
    sink = MemorySink()
    events = processor(sink, CountingRegenerator())
    pending = events.read(record(3, journal_event("E3")))
    assert isinstance(pending, PendingEvent)
    assert pending.ordering_key is None
    await events.complete(WaitingEvents([pending]))
    [result] = sink.results
    assert result.data.reason is FailureReason.INTERNAL_ERROR  # type: ignore[union-attr]
    assert "RecursionError" in result.data.message  # type: ignore[union-attr]
    assert [offset for offset, _ in sink.dead_letters] == [3]


@pytest.mark.parametrize(
    ("headers", "redrive"),
    [
        ((), 0),
        (((REDRIVE_HEADER, b"2"),), 2),
        (((REDRIVE_HEADER, b"1"), (REDRIVE_HEADER, b"3")), 3),  # the last one is redrive's
        (((REDRIVE_HEADER, b"two"),), 0),
    ],
)
def test_a_re_driven_record_is_planned_with_its_re_drive_count(
    headers: tuple[tuple[str, bytes], ...], redrive: int
) -> None:
    events = processor(MemorySink(), CountingRegenerator())
    raw = json.dumps(journal_event("E1")).encode()
    pending = events.read(InputRecord("input", 0, 0, b"key", raw, headers))
    assert isinstance(pending.subject, RegenerationTask)
    assert pending.subject.redrive == redrive
