"""One result per event, whatever goes wrong: shared calls, raising publications, refused
records, input decided as it is read. In memory: the sink and the regenerator are fakes; the
integration suite runs the same paths against the real broker."""

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest
from fakes import MemorySink, WaitingEvents

from regen_sync import processing
from regen_sync.coalescing import SharedCall
from regen_sync.domain import FailureReason, Outcome, RegenerationTask, Succeeded
from regen_sync.kafka import ReliableDelivery
from regen_sync.observability import JsonFormatter, Metrics
from regen_sync.processing import REDRIVE_HEADER, EventProcessor, InputRecord


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
        self, task: RegenerationTask, *, shared_call: SharedCall[object] | None = None
    ) -> Outcome:
        if shared_call is not None:
            shared_call.close()
        self.calls.append(task.event.id)
        logging.getLogger("regen_sync.upstream").info("calling the upstream")
        return Outcome(Succeeded({"journalId": "BJO-1"}), attempts=1)


def processor(
    sink: MemorySink, regenerator: CountingRegenerator, metrics: Metrics | None = None
) -> EventProcessor:
    metrics = metrics or Metrics()
    return EventProcessor(
        regenerator,  # type: ignore[arg-type]
        ReliableDelivery(sink, metrics, first_retry_seconds=0.001),
        metrics,
        event_source="urn:test",
        max_event_bytes=10_000,
        max_handling_attempts=3,
    )


@pytest.fixture
def written_log() -> Iterator[io.StringIO]:
    """The log as the service writes it: JSON lines, formatted as they are logged."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def results_of(sink: MemorySink) -> list[tuple[str | None, str]]:
    return [(r.data.sourceEventId, r.type) for r in sink.results]


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
    metrics = Metrics()
    events = processor(sink, regenerator, metrics)
    sink.hold = asyncio.Event()
    waiting = WaitingEvents([events.read(record(n, journal_event(f"E{n}"))) for n in range(2)])
    handling = asyncio.create_task(events.complete(waiting))
    await sink.publishing.wait()
    # The call's results go out together: both are on their way when the hand-over comes.
    await asyncio.sleep(0.01)
    assert sink.attempts == ["E0", "E1"]
    handling.cancel()
    await asyncio.sleep(0.01)
    assert not handling.done(), "the cancellation waits for the publications it interrupted"
    sink.hold.set()
    with pytest.raises(asyncio.CancelledError):
        await handling
    assert [r.data.sourceEventId for r in sink.results] == ["E0", "E1"]
    assert waiting.finished_events == waiting.events, "both are out: not read again"
    succeeded = metrics.registry.get_sample_value(
        "regen_results_total",
        {"operation": "regenerate_journal", "outcome": "succeeded", "reason": ""},
    )
    assert succeeded == 2


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
    metrics = Metrics()
    events = processor(sink, regenerator, metrics)
    group = [events.read(record(n, journal_event(f"E{n}"))) for n in range(3)]
    sink.fail_once = {"E1"}
    waiting = WaitingEvents(group)
    await events.complete(waiting)
    assert regenerator.calls == ["E0"], "the upstream call is not repeated"
    # The three go out together; E1's raised and was tried again, alone.
    assert sorted(sink.attempts) == ["E0", "E1", "E1", "E2"], "only the raising publication again"
    assert sorted(r.data.sourceEventId for r in sink.results) == ["E0", "E1", "E2"]
    assert sorted(waiting.finished_events, key=lambda event: event.record.offset) == group
    assert metrics.registry.get_sample_value("regen_publish_errors_total") == 1


async def test_a_result_the_broker_refuses_ends_as_internal_error_with_a_dead_letter() -> None:
    sink, regenerator = MemorySink(), CountingRegenerator()
    sink.refuse_succeeded = True
    events = processor(sink, regenerator)
    waiting = WaitingEvents([events.read(record(7, journal_event("E7")))])
    await events.complete(waiting)
    assert sink.attempts == ["E7", "E7"], "refused once, not retried: then its internal_error"
    [result] = sink.results
    assert result.type == "regeneration.failed"
    assert result.data.reason is FailureReason.INTERNAL_ERROR  # type: ignore[union-attr]
    assert result.data.message == "internal error: RecordRefused"  # type: ignore[union-attr]
    assert result.data.sourceEventId == "E7"
    assert sink.dead_letters == [(7, FailureReason.INTERNAL_ERROR)]
    assert sink.published == ["dead letter 7", "result E7"], "the dead letter first"
    assert waiting.finished_events == waiting.events


async def test_a_dead_letter_refused_even_as_internal_error_leaves_the_event_unfinished() -> None:
    sink, regenerator = MemorySink(), CountingRegenerator()
    sink.refuse_dead_letters = True
    events = processor(sink, regenerator)
    waiting = WaitingEvents([events.read(record(4, b"not json"))])
    with pytest.raises(processing.RecordRefused):
        await asyncio.wait_for(events.complete(waiting), timeout=5)
    assert sink.attempts == [], "no result without its dead letter"
    assert waiting.finished_events == [], "its offset stays uncommitted: read again"


async def test_a_failure_is_dead_lettered_before_its_result_is_published() -> None:
    sink = MemorySink()
    events = processor(sink, CountingRegenerator())
    waiting = WaitingEvents([events.read(record(5, b"not json"))])
    await events.complete(waiting)
    assert sink.published == ["dead letter 5", "result None"]
    assert sink.dead_letters == [(5, FailureReason.INVALID_EVENT)]
    assert waiting.finished_events == waiting.events


def test_invalid_input_is_decided_as_it_is_read() -> None:
    events = processor(MemorySink(), CountingRegenerator())
    pending = events.read(record(2, journal_event("E2") | {"type": "invoice.deleted"}))
    assert pending.task is None
    assert pending.decided is not None
    assert pending.decided.data.reason is FailureReason.INVALID_EVENT
    assert pending.decided.data.sourceEventId == "E2"
    assert pending.decided.data.attempts == 0
    [problem] = pending.decided.data.problems or []
    assert "unknown event type" in problem
    assert (pending.ordering_key, pending.coalescing_key, pending.lane) == (None, None, "none")


async def test_a_record_whose_reading_raises_is_decided_as_internal_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_parser(raw: bytes | None, *, max_bytes: int) -> None:
        raise RecursionError("parser bug")

    monkeypatch.setattr(processing, "parse_event", broken_parser)
    sink, regenerator = MemorySink(), CountingRegenerator()
    events = processor(sink, regenerator)
    pending = events.read(record(3, journal_event("E3")))
    assert pending.task is None
    assert pending.decided is not None
    assert pending.decided.data.reason is FailureReason.INTERNAL_ERROR
    assert pending.decided.data.message == "internal error: RecursionError"
    assert pending.ordering_key is None
    await events.complete(WaitingEvents([pending]))
    assert sink.results == [pending.decided]
    assert sink.dead_letters == [(3, FailureReason.INTERNAL_ERROR)]
    assert regenerator.calls == []


async def test_log_lines_carry_their_events_coordinates_and_only_theirs(
    written_log: io.StringIO,
) -> None:
    sink, regenerator = MemorySink(), CountingRegenerator()
    events = processor(sink, regenerator)
    first = events.read(record(10, journal_event("E10", "BJO-A")))
    second = events.read(record(11, journal_event("E11", "BJO-B")))
    await events.complete(WaitingEvents([first]))
    logging.getLogger("regen_sync.test").info("between events")
    await events.complete(WaitingEvents([second]))

    lines = [json.loads(line) for line in written_log.getvalue().splitlines()]
    calls = [line for line in lines if line["message"] == "calling the upstream"]
    coordinates = [(c["topic"], c["partition"], c["offset"], c["event_id"]) for c in calls]
    assert coordinates == [("input", 0, 10, "E10"), ("input", 0, 11, "E11")]
    assert calls[0]["type"] == "journal.fixed"
    [between] = [line for line in lines if line["message"] == "between events"]
    assert not {"topic", "partition", "offset", "event_id", "type"} & between.keys()
    results = [line for line in lines if line["message"] == "regeneration succeeded"]
    assert [(r["offset"], r["event_id"], r["operation"]) for r in results] == [
        (10, "E10", "regenerate_journal"),
        (11, "E11", "regenerate_journal"),
    ]


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
    assert pending.task is not None
    assert pending.task.redrive == redrive
