"""OpenTelemetry traces, one per event: its span lasts from the moment the record is read
until its result is published, with the upstream call(s) and the publication as children.

The input record's ``traceparent`` header, when present, is the event's parent, so the trace
continues the one of the system that emitted the event; the context is passed on in the
``traceparent`` of every upstream request and of the result event. Events served by another
event's upstream call (coalescing) link to that event's span.

Off by default: then ``Tracing.disabled()`` does nothing and costs next to nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from regen_sync.config import TracingSettings

_TRACER_NAME = "regen-sync"
# W3C Trace Context only: what the issue asks for, and no vendor format by accident.
_PROPAGATOR = TraceContextTextMapPropagator()


@dataclass(frozen=True, slots=True)
class EventSpan:
    """The span of one event, from read to result."""

    span: Span


class Tracing:
    def __init__(self, provider: TracerProvider | None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(_TRACER_NAME) if provider is not None else None

    @classmethod
    def disabled(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_settings(cls, settings: TracingSettings, *, version: str) -> Tracing:
        if not settings.enabled:
            return cls.disabled()
        # Imported here: the exporter (and its HTTP stack) loads only when tracing is on.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        assert settings.endpoint is not None, "validated by TracingSettings"
        exporter = OTLPSpanExporter(endpoint=str(settings.endpoint))
        return cls.exporting_to(
            BatchSpanProcessor(exporter),
            service_name=settings.service_name,
            version=version,
            sample_ratio=settings.sample_ratio,
        )

    @classmethod
    def exporting_to(
        cls, processor: SpanProcessor, *, service_name: str, version: str, sample_ratio: float
    ) -> Tracing:
        provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: service_name, SERVICE_VERSION: version}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_event(
        self, headers: Sequence[tuple[str, bytes]], *, topic: str, partition: int, offset: int
    ) -> EventSpan | None:
        """The event's span, started as its record is read, child of the record's
        ``traceparent`` if it has one."""
        if self._tracer is None:
            return None
        carrier = {
            name.lower(): value.decode("latin-1")
            for name, value in headers
            if name.lower() in ("traceparent", "tracestate")
        }
        parent = _PROPAGATOR.extract(carrier)
        span = self._tracer.start_span(
            f"{topic} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(partition),
                "messaging.kafka.offset": offset,
            },
        )
        return EventSpan(span)

    @contextlib.contextmanager
    def within(self, event: EventSpan | None) -> Iterator[None]:
        """Make the event's span current: spans and headers made inside belong to it."""
        if event is None:
            yield
            return
        # The event's span ends when its result is out, and its status is set there.
        with trace.use_span(
            event.span, end_on_exit=False, record_exception=False, set_status_on_exception=False
        ):
            yield

    def upstream_call(
        self, operation: str, upstream: str
    ) -> contextlib.AbstractContextManager[Span | None]:
        """The span of one attempt at an upstream call, under the current event's span."""
        return self._child(
            f"{operation} call",
            SpanKind.CLIENT,
            {"regen.operation": operation, "regen.upstream": upstream},
        )

    def publication(self, topic: str) -> contextlib.AbstractContextManager[Span | None]:
        """The span of publishing a result, under the current event's span."""
        return self._child(
            f"{topic} publish",
            SpanKind.PRODUCER,
            {"messaging.system": "kafka", "messaging.destination.name": topic},
        )

    @contextlib.contextmanager
    def _child(
        self, name: str, kind: SpanKind, attributes: dict[str, str]
    ) -> Iterator[Span | None]:
        if self._tracer is None:
            yield None
            return
        with self._tracer.start_as_current_span(name, kind=kind, attributes=attributes) as span:
            yield span

    def inject(self, headers: MutableMapping[str, str]) -> None:
        """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing headers."""
        if self._tracer is not None:
            _PROPAGATOR.inject(headers)

    def link(self, event: EventSpan | None, served_by: EventSpan | None) -> None:
        """The event was served by another event's upstream call."""
        if event is not None and served_by is not None and event is not served_by:
            event.span.add_link(served_by.span.get_span_context())

    def end_event(
        self,
        event: EventSpan | None,
        *,
        event_id: str | None,
        event_type: str | None,
        operation: str | None,
        failure_reason: str | None,
    ) -> None:
        """End the event's span once its result is published."""
        if event is None:
            return
        attributes = {
            "cloudevents.event_id": event_id,
            "cloudevents.event_type": event_type,
            "regen.operation": operation,
        }
        event.span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if failure_reason is not None:
            event.span.set_attribute("regen.failure_reason", failure_reason)
            event.span.set_status(Status(StatusCode.ERROR, failure_reason))
        event.span.end()

    def shutdown(self) -> None:
        """Export what is buffered (bounded by the exporter's own timeout)."""
        if self._provider is not None:
            self._provider.shutdown()


def mark_failed(span: Span | None, description: str, http_status: int | None = None) -> None:
    """Record on a child span that what it did failed."""
    if span is None:
        return
    if http_status is not None:
        span.set_attribute("http.response.status_code", http_status)
    span.set_status(Status(StatusCode.ERROR, description))
