"""OpenTelemetry end to end: the service, with tracing on, exports its spans over OTLP/HTTP to a
real receiver on loopback, continues the input's traceparent, and passes the trace on to the
upstream (the sandbox's recorded request headers) and to the result event's headers."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from harness import billing_event, eventually, new_event, unique
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from stack import Stack

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"


@dataclass(frozen=True)
class ReceivedSpan:
    service_name: str
    span: Span

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    def attribute(self, name: str) -> str | int | None:
        for pair in self.span.attributes:
            if pair.key == name:
                value = pair.value
                return value.string_value if value.HasField("string_value") else value.int_value
        return None


class OtlpReceiver:
    """An OTLP/HTTP traces endpoint (protobuf), as a collector would serve it."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                receiver.accept(request)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/v1/traces"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def accept(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                service_name = next(
                    pair.value.string_value
                    for pair in resource_spans.resource.attributes
                    if pair.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend(ReceivedSpan(service_name, s) for s in scope_spans.spans)

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def traceparent_parts(value: bytes | str) -> list[str]:
    text = value.decode() if isinstance(value, bytes) else value
    version, trace_id, span_id, flags = text.split("-")
    assert version == "00", text
    assert int(flags, 16) & 1, f"not sampled: {text}"
    return [trace_id, span_id]


async def test_a_trace_runs_from_the_input_through_the_upstream_call_to_the_result(
    make_stack: Callable[..., Awaitable[Stack]], otlp_receiver: OtlpReceiver
) -> None:
    stack = await make_stack(
        "tracing",
        sandbox_flags=("--concurrency-limit", "0"),
        REGEN_TRACING__ENABLED="true",
        REGEN_TRACING__ENDPOINT=otlp_receiver.url,
        # Export each batch at once instead of every 5 s.
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    run = unique("TRACE")
    traced = billing_event(run)
    untraced = new_event("journal.fixed", {"journalId": f"{run}-J"})
    await stack.sender.send(
        traced, key=run, headers=[("traceparent", f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01".encode())]
    )
    await stack.sender.send(untraced, key=f"{run}-J")
    results = await stack.watcher.wait_for([traced["id"], untraced["id"]])

    # The result event continues the input's trace.
    result_trace_id, _ = traceparent_parts(results[traced["id"]].headers["traceparent"])
    assert result_trace_id == TRACE_ID
    # So did the request Zuora received, naming the span of that call.
    [call] = await stack.sandbox.requests("billing", match=run)
    call_trace_id, call_span_id = traceparent_parts(call["headers"]["traceparent"])
    assert call_trace_id == TRACE_ID

    def whole_trace_exported() -> bool:
        kinds = {span.span.kind for span in otlp_receiver.of_trace(TRACE_ID)}
        return {Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_PRODUCER} <= kinds

    await eventually(whole_trace_exported)
    spans = otlp_receiver.of_trace(TRACE_ID)
    assert {span.service_name for span in spans} == {"regen-sync"}
    [event_span] = [s for s in spans if s.span.kind == Span.SPAN_KIND_CONSUMER]
    assert event_span.parent_span_id == PARENT_SPAN_ID
    assert event_span.attribute("cloudevents.event_id") == traced["id"]
    assert event_span.attribute("regen.operation") == "regenerate_billing_transactions"
    [call_span] = [s for s in spans if s.span.kind == Span.SPAN_KIND_CLIENT]
    assert call_span.span_id == call_span_id
    [publication] = [s for s in spans if s.span.kind == Span.SPAN_KIND_PRODUCER]
    assert publication.attribute("messaging.destination.name") == stack.topics.succeeded
    assert {call_span.parent_span_id, publication.parent_span_id} == {event_span.span_id}
    # Every span of the event ends within the event's span.
    assert all(s.span.end_time_unix_nano <= event_span.span.end_time_unix_nano for s in spans)

    # An event without a traceparent starts a trace of its own, passed on the same way.
    untraced_trace_id, _ = traceparent_parts(results[untraced["id"]].headers["traceparent"])
    assert untraced_trace_id != TRACE_ID
    [journal_call] = await stack.sandbox.requests("journal", match=f"{run}-J")
    assert traceparent_parts(journal_call["headers"]["traceparent"])[0] == untraced_trace_id
    await eventually(lambda: len(otlp_receiver.of_trace(untraced_trace_id)) >= 3)
    [root] = [
        s
        for s in otlp_receiver.of_trace(untraced_trace_id)
        if s.span.kind == Span.SPAN_KIND_CONSUMER
    ]
    assert root.parent_span_id == ""
