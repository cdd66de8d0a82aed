"""Results and dead letters, in memory: a result goes to its topic as CloudEvents JSON with the
input's key and the trace context; the input record's bytes are copied whole into its dead
letter; only a copy the broker refuses as too large is cut to 64 KiB, counted and logged; and the
service wires its producer and consumer for records up to REGEN_KAFKA__MAX_REQUEST_BYTES."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import regen_sync.app
from regen_sync.config import load_settings
from regen_sync.domain import (
    FailureReason,
    InvalidEvent,
    Outcome,
    Succeeded,
    invalid_event_result,
    parse_event,
    plan,
    result_event,
)
from regen_sync.kafka.publishing import DLQ_REASON, DLQ_TRUNCATED_FROM, KafkaResultSink
from regen_sync.observability import Metrics, Tracing, logged_with
from regen_sync.observability.logging import JsonFormatter
from regen_sync.processing import InputRecord, RecordRefused

DEAD_LETTER_TOPIC = "regen-sync.dead-letter"
SUCCEEDED_TOPIC = "regen-sync.succeeded"
FAILED_TOPIC = "regen-sync.failed"
CUT_BYTES = 64 * 1024
INPUT_HEADERS = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]


class FakeProducer:
    """Takes records up to ``broker_limit`` bytes of value, like a broker whose topic has that
    ``max.message.bytes``; larger ones fail as aiokafka fails a batch the broker refused."""

    def __init__(self, broker_limit: int = 10 * 1024 * 1024) -> None:
        self.broker_limit = broker_limit
        self.sent: list[dict[str, Any]] = []
        self.refused: list[int] = []

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        if len(value or b"") > self.broker_limit:
            self.refused.append(len(value or b""))
            # Kafka's MESSAGE_TOO_LARGE (error code 10), as aiokafka raises it.
            raise MessageSizeTooLargeError()
        self.sent.append({"topic": topic, "value": value, "key": key, "headers": headers})


def sink_with(
    producer: FakeProducer, metrics: Metrics, tracing: Tracing | None = None
) -> KafkaResultSink:
    return KafkaResultSink(
        producer,
        succeeded_topic=SUCCEEDED_TOPIC,
        failed_topic=FAILED_TOPIC,
        dead_letter_topic=DEAD_LETTER_TOPIC,
        max_request_bytes=8 * 1024 * 1024,
        metrics=metrics,
        tracing=tracing or Tracing.disabled(),
    )


def input_record(value: bytes) -> InputRecord:
    return InputRecord("billing.data-fixed", 3, 1207, b"key-1", value, INPUT_HEADERS)


def too_large_event(size: int) -> bytes:
    # Not JSON that matters here: bytes of every value, so that a cut copy shows it is a prefix.
    return bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)


def truncated(metrics: Metrics, reason: FailureReason) -> float:
    value = metrics.registry.get_sample_value(
        "regen_dead_letters_truncated_total", {"reason": reason.value}
    )
    assert value is not None, "the series is not exported"
    return value


INVALID = invalid_event_result(
    InvalidEvent(("the event is 1572864 bytes, above the limit",)),
    source="urn:test",
    origin="billing.data-fixed/3/1207",
    now=dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
)


def succeeded_result() -> Any:
    raw = json.dumps(
        {
            "specversion": "1.0",
            "id": "E1",
            "source": "test",
            "type": "journal.fixed",
            "data": {"journalId": "BJO-1"},
        }
    ).encode()
    event = parse_event(raw, max_bytes=10_000)
    assert not isinstance(event, InvalidEvent)
    outcome = Outcome(Succeeded({"journalId": "BJO-1"}), attempts=1)
    return result_event(plan(event), outcome, source="urn:test", now=dt.datetime.now(dt.UTC))


async def test_a_result_goes_to_its_topic_keyed_like_its_input_with_the_trace_context() -> None:
    producer = FakeProducer()
    tracing = Tracing.exporting_to(
        SimpleSpanProcessor(InMemorySpanExporter()),
        service_name="regen-sync",
        version="test",
        sample_ratio=1,
    )
    sink = sink_with(producer, Metrics(), tracing)
    succeeded, failed = succeeded_result(), INVALID

    await sink.publish_result(input_record(b"{}"), succeeded)
    await sink.publish_result(input_record(b"{}"), failed)

    assert [sent["topic"] for sent in producer.sent] == [SUCCEEDED_TOPIC, FAILED_TOPIC]
    for sent, event in zip(producer.sent, (succeeded, failed), strict=True):
        assert sent["value"] == event.model_dump_json(exclude_none=True).encode()
        assert sent["key"] == b"key-1"
        headers = dict(sent["headers"])
        assert headers["content-type"] == b"application/cloudevents+json; charset=UTF-8"
        assert headers["traceparent"].startswith(b"00-")


async def test_a_result_too_large_for_the_broker_is_refused_for_good() -> None:
    producer = FakeProducer(broker_limit=10)
    sink = sink_with(producer, Metrics())

    with pytest.raises(RecordRefused, match="the result event is too large"):
        await sink.publish_result(input_record(b"{}"), succeeded_result())


async def test_a_dead_letter_the_broker_takes_keeps_every_byte() -> None:
    metrics = Metrics()
    producer = FakeProducer()
    sink = sink_with(producer, metrics)
    value = too_large_event(1536 * 1024)

    await sink.dead_letter(input_record(value), INVALID)

    [sent] = producer.sent
    assert sent["topic"] == DEAD_LETTER_TOPIC
    assert sent["value"] == value
    assert len(sent["value"]) == 1536 * 1024
    assert sent["key"] == b"key-1"
    assert sent["headers"][:1] == INPUT_HEADERS
    assert (DLQ_REASON, b"invalid_event") in sent["headers"]
    assert DLQ_TRUNCATED_FROM not in dict(sent["headers"])
    assert truncated(metrics, FailureReason.INVALID_EVENT) == 0
    dead_letters = {"reason": "invalid_event"}
    assert metrics.registry.get_sample_value("regen_dead_letters_total", dead_letters) == 1


async def test_a_dead_letter_the_broker_refuses_is_cut_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    producer = FakeProducer(broker_limit=1024 * 1024)
    sink = sink_with(producer, metrics)
    value = too_large_event(1536 * 1024)
    caplog.handler.setFormatter(JsonFormatter())  # formatted as logged, with its coordinates

    with (
        caplog.at_level(logging.WARNING, logger="regen_sync.kafka.publishing"),
        logged_with({"topic": "billing.data-fixed", "partition": 3, "offset": 1207}),
    ):
        await sink.dead_letter(input_record(value), INVALID)

    assert producer.refused == [len(value)]
    [sent] = producer.sent
    assert sent["value"] == value[:CUT_BYTES]
    headers = dict(sent["headers"])
    assert headers[DLQ_TRUNCATED_FROM] == str(len(value)).encode()
    assert headers[DLQ_REASON] == b"invalid_event"
    assert sent["headers"][:1] == INPUT_HEADERS
    assert truncated(metrics, FailureReason.INVALID_EVENT) == 1
    assert truncated(metrics, FailureReason.REJECTED) == 0

    [line] = caplog.text.splitlines()
    written = json.loads(line)
    assert written | {"time": "-"} == {
        "time": "-",
        "level": "WARNING",
        "logger": "regen_sync.kafka.publishing",
        "message": "dead letter truncated: the whole record was refused as too large",
        "topic": "billing.data-fixed",
        "partition": 3,
        "offset": 1207,
        "dead_letter_topic": DEAD_LETTER_TOPIC,
        "reason": "invalid_event",
        "value_bytes": len(value),
        "kept_bytes": CUT_BYTES,
        "max_request_bytes": 8 * 1024 * 1024,
        "error": "MessageSizeTooLargeError",
    }


async def test_a_dead_letter_refused_even_when_cut_fails_the_event_without_counting() -> None:
    metrics = Metrics()
    producer = FakeProducer(broker_limit=1024)
    sink = sink_with(producer, metrics)

    with pytest.raises(RecordRefused, match="the dead letter is too large"):
        await sink.dead_letter(input_record(too_large_event(1536 * 1024)), INVALID)

    assert producer.refused == [1536 * 1024, CUT_BYTES]
    assert producer.sent == []
    assert truncated(metrics, FailureReason.INVALID_EVENT) == 0


def test_every_reason_exports_a_zero_truncation_count_from_the_start() -> None:
    metrics = Metrics()
    exported = {reason: truncated(metrics, reason) for reason in FailureReason}
    assert exported == dict.fromkeys(FailureReason, 0)


# --- wiring --------------------------------------------------------------------------------------

ENV = {
    "REGEN_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "REGEN_ZUORA__BASE_URL": "http://127.0.0.1:9",
    "REGEN_ZUORA__CLIENT_ID": "client",
    "REGEN_ZUORA__CLIENT_SECRET": "a-real-looking-secret",
    "REGEN_SOFTWAREONE__BASE_URL": "http://127.0.0.1:9",
    "REGEN_SOFTWAREONE__API_TOKEN": "a-real-looking-token",
    "REGEN_SECRETS_DIR": "/nonexistent",
}


def wired_sizes(monkeypatch: pytest.MonkeyPatch, **env: str) -> tuple[int, dict[str, Any]]:
    """The sink's max_request_bytes and the input consumer's fetch sizes. Called in a running
    event loop, as the service builds its app (its producer binds to the loop)."""
    for name in [name for name in os.environ if name.startswith("REGEN_")]:
        monkeypatch.delenv(name)
    for name, value in (ENV | env).items():
        monkeypatch.setenv(name, value)
    sinks: list[dict[str, Any]] = []

    class RecordingSink(KafkaResultSink):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            sinks.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(regen_sync.app, "KafkaResultSink", RecordingSink)
    app = regen_sync.app.create_app(load_settings())
    [subscriber] = list(app.broker.subscribers)  # type: ignore[union-attr]
    # FastStream keeps the AIOKafkaConsumer's arguments here (no public accessor).
    consumer_options = subscriber._connection_args
    fetch = {name: value for name, value in consumer_options.items() if "bytes" in name}
    return sinks[0]["max_request_bytes"], fetch


async def test_producer_and_consumer_take_records_up_to_max_request_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    max_request_size, fetch = wired_sizes(monkeypatch)

    assert max_request_size == 8 * 1024 * 1024
    assert fetch["max_partition_fetch_bytes"] == 8 * 1024 * 1024
    assert fetch["fetch_max_bytes"] >= fetch["max_partition_fetch_bytes"]


async def test_max_request_bytes_never_goes_below_a_valid_event_plus_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    max_request_size, fetch = wired_sizes(
        monkeypatch,
        REGEN_KAFKA__MAX_REQUEST_BYTES=str(2 * 1024 * 1024),
        REGEN_PROCESSING__MAX_EVENT_BYTES=str(4 * 1024 * 1024),
    )

    assert max_request_size == 4 * 1024 * 1024 + 16_384
    assert fetch["max_partition_fetch_bytes"] == 4 * 1024 * 1024 + 16_384


async def test_max_request_bytes_above_the_fetch_limit_raises_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    max_request_size, fetch = wired_sizes(
        monkeypatch, REGEN_KAFKA__MAX_REQUEST_BYTES=str(64 * 1024 * 1024)
    )

    assert max_request_size == 64 * 1024 * 1024
    assert fetch["max_partition_fetch_bytes"] == fetch["fetch_max_bytes"] == 64 * 1024 * 1024
