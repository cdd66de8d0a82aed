"""Traces in memory: an event's span continues the input's traceparent, its upstream call and
its publication are children, a coalesced event links to the span of the call that served it,
and with tracing off nothing is traced or propagated. The integration suite checks the same
against a real OTLP receiver, the sandbox's request headers and the result records."""

import json

import pytest
from fakes import MemorySink, WaitingEvents
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from regen_sync.config import CircuitSettings, ProcessingSettings, UpstreamHttpSettings
from regen_sync.domain import (
    AttemptResult,
    RegenerationTask,
    Succeeded,
    TransientFailure,
    Upstream,
)
from regen_sync.kafka import ReliableDelivery
from regen_sync.observability import Metrics, Tracing
from regen_sync.processing import EventProcessor, InputRecord
from regen_sync.regeneration import Regenerator
from regen_sync.resilience import GroupShare, UpstreamGate

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"


def journal_record(
    offset: int, event_id: str, headers: tuple[tuple[str, bytes], ...] = ()
) -> InputRecord:
    value = {
        "specversion": "1.0",
        "id": event_id,
        "source": "test",
        "type": "journal.fixed",
        "data": {"journalId": "BJO-1"},
    }
    return InputRecord("input", 0, offset, b"BJO-1", json.dumps(value).encode(), headers)


class TracedUpstream:
    """Answers from a script and keeps the trace headers it would have sent with each call."""

    def __init__(self, tracing: Tracing, answers: list[AttemptResult]) -> None:
        self.tracing = tracing
        self.answers = answers
        self.sent_headers: list[dict[str, str]] = []

    async def attempt(self, task: RegenerationTask) -> AttemptResult:
        headers: dict[str, str] = {}
        self.tracing.inject(headers)
        self.sent_headers.append(headers)
        return self.answers.pop(0)


def traced_processor(
    tracing: Tracing, answers: list[AttemptResult]
) -> tuple[EventProcessor, TracedUpstream, MemorySink]:
    metrics, upstream, sink = Metrics(), TracedUpstream(tracing, answers), MemorySink(tracing)
    settings = ProcessingSettings(backoff_initial_seconds=0.01, backoff_max_seconds=0.02)
    gate = UpstreamGate(
        Upstream.SOFTWAREONE,
        UpstreamHttpSettings(max_concurrency=5),
        CircuitSettings(),
        metrics,
        max_pause_seconds=1,
        share=GroupShare.whole(),
    )
    regenerator = Regenerator(
        {Upstream.SOFTWAREONE: upstream}, {Upstream.SOFTWAREONE: gate}, settings, metrics, tracing
    )
    processor = EventProcessor(
        regenerator,
        ReliableDelivery(sink, metrics),
        metrics,
        event_source="urn:test",
        max_event_bytes=10_000,
        max_handling_attempts=3,
        tracing=tracing,
    )
    return processor, upstream, sink


@pytest.fixture
def spans() -> tuple[Tracing, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting_to(
        SimpleSpanProcessor(exporter), service_name="regen-sync", version="test", sample_ratio=1
    )
    return tracing, exporter


async def test_an_event_trace_continues_its_traceparent_through_the_call_and_the_publication(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    answers: list[AttemptResult] = [TransientFailure("busy", http_status=503), Succeeded({})]
    processor, upstream, sink = traced_processor(tracing, answers)
    pending = processor.read(journal_record(7, "E1", (("traceparent", TRACEPARENT.encode()),)))
    await processor.complete(WaitingEvents([pending]))

    finished = exporter.get_finished_spans()
    [event_span] = [s for s in finished if s.kind is SpanKind.CONSUMER]
    assert event_span.context is not None
    assert event_span.parent is not None
    assert f"{event_span.context.trace_id:032x}" == TRACE_ID
    assert f"{event_span.parent.span_id:016x}" == PARENT_SPAN_ID
    assert event_span.attributes is not None
    assert event_span.attributes["cloudevents.event_id"] == "E1"
    assert event_span.attributes["messaging.kafka.offset"] == 7
    calls = [s for s in finished if s.kind is SpanKind.CLIENT]
    publications = [s for s in finished if s.kind is SpanKind.PRODUCER]
    assert len(calls) == 2, "one span per attempt"
    assert [call.status.status_code for call in calls] == [StatusCode.ERROR, StatusCode.UNSET]
    assert calls[0].attributes is not None
    assert calls[0].attributes["http.response.status_code"] == 503
    assert len(publications) == 1
    for child in [*calls, *publications]:
        assert child.parent is not None
        assert child.parent.span_id == event_span.context.span_id
    # What the upstream was sent names the attempt's span, in the input's trace.
    assert [h["traceparent"].split("-")[1:3] for h in upstream.sent_headers] == [
        [TRACE_ID, f"{call.context.span_id:016x}"] for call in calls if call.context is not None
    ]
    assert [r.data.sourceEventId for r in sink.results] == ["E1"]


async def test_a_coalesced_event_links_to_the_span_of_the_event_whose_call_served_it(
    spans: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, exporter = spans
    processor, _, _ = traced_processor(tracing, [Succeeded({})])
    group = [processor.read(journal_record(n, f"E{n}")) for n in range(2)]
    await processor.complete(WaitingEvents(group))

    events = {
        s.attributes["cloudevents.event_id"]: s
        for s in exporter.get_finished_spans()
        if s.kind is SpanKind.CONSUMER and s.attributes is not None
    }
    assert set(events) == {"E0", "E1"}
    assert events["E0"].context is not None
    assert events["E1"].context is not None
    assert events["E0"].context.trace_id != events["E1"].context.trace_id
    assert [link.context.span_id for link in events["E1"].links] == [events["E0"].context.span_id]


async def test_a_failed_event_ends_its_span_as_an_error() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting_to(
        SimpleSpanProcessor(exporter), service_name="regen-sync", version="t", sample_ratio=1
    )
    processor, _, _ = traced_processor(tracing, [])
    invalid = InputRecord("input", 0, 1, None, b"not json", ())
    await processor.complete(WaitingEvents([processor.read(invalid)]))
    [event_span] = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CONSUMER]
    assert event_span.status.status_code is StatusCode.ERROR
    assert event_span.attributes is not None
    assert event_span.attributes["regen.failure_reason"] == "invalid_event"


async def test_with_tracing_off_nothing_is_traced_or_propagated() -> None:
    tracing = Tracing.disabled()
    processor, upstream, sink = traced_processor(tracing, [Succeeded({})])
    pending = processor.read(journal_record(1, "E1", (("traceparent", TRACEPARENT.encode()),)))
    assert pending.trace is None
    await processor.complete(WaitingEvents([pending]))
    assert upstream.sent_headers == [{}]
    assert len(sink.results) == 1
