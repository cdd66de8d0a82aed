"""Publishing results and dead letters to Kafka with the service's producer, keyed like the
input record."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError

from regen_sync.domain import RegenerationFailed, RegenerationSucceeded, ResultEvent
from regen_sync.observability import Metrics, Tracing
from regen_sync.processing import InputRecord, RecordRefused

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=UTF-8"
_CONTENT_TYPE = ("content-type", CLOUDEVENTS_JSON.encode())
# Headers added to a dead letter; the original record's headers come first, unchanged.
DLQ_REASON = "regen-error-reason"
DLQ_MESSAGE = "regen-error-message"
DLQ_ORIGINAL_TOPIC = "regen-original-topic"
DLQ_ORIGINAL_PARTITION = "regen-original-partition"
DLQ_ORIGINAL_OFFSET = "regen-original-offset"
DLQ_FAILED_AT = "regen-failed-at"
DLQ_TRUNCATED_FROM = "regen-truncated-from-bytes"
# Errors that sending the same record again can never cure.
_TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
# What is kept of an input too large for the dead-letter topic: enough to identify it.
_TRUNCATED_VALUE_BYTES = 64 * 1024

logger = logging.getLogger(__name__)


class RecordProducer(Protocol):
    """What the sink uses of ``aiokafka.AIOKafkaProducer`` (started and stopped by its owner)."""

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any: ...


class KafkaResultSink:
    """Results and dead letters through the service's one producer. A dead letter carries the
    input's header bytes unchanged; a result carries its content type and the trace context."""

    def __init__(
        self,
        producer: RecordProducer,
        *,
        succeeded_topic: str,
        failed_topic: str,
        dead_letter_topic: str,
        max_request_bytes: int,
        metrics: Metrics,
        tracing: Tracing,
    ) -> None:
        self._producer = producer
        self._succeeded_topic = succeeded_topic
        self._failed_topic = failed_topic
        self._dead_letter_topic = dead_letter_topic
        self._max_request_bytes = max_request_bytes
        self._metrics = metrics
        self._tracing = tracing

    async def publish_result(self, record: InputRecord, event: ResultEvent) -> None:
        topic = (
            self._succeeded_topic
            if isinstance(event, RegenerationSucceeded)
            else self._failed_topic
        )
        # A failed publication ends its span with the error (the tracer records exceptions).
        with self._tracing.publication(topic):
            headers = [_CONTENT_TYPE]
            if self._tracing.enabled:
                trace: dict[str, str] = {}
                self._tracing.inject(trace)
                headers += [(name, value.encode()) for name, value in trace.items()]
            try:
                await self._producer.send_and_wait(
                    topic,
                    value=event.model_dump_json(exclude_none=True).encode(),
                    key=record.key,
                    headers=headers,
                )
            except _TOO_LARGE as error:
                raise RecordRefused(f"the result event is too large: {error}") from error

    async def dead_letter(self, record: InputRecord, failed: RegenerationFailed) -> None:
        reason = failed.data.reason
        error_headers = [
            (DLQ_REASON, reason.value.encode()),
            (DLQ_MESSAGE, failed.data.message[:1000].encode()),
            (DLQ_ORIGINAL_TOPIC, record.topic.encode()),
            (DLQ_ORIGINAL_PARTITION, str(record.partition).encode()),
            (DLQ_ORIGINAL_OFFSET, str(record.offset).encode()),
            (DLQ_FAILED_AT, dt.datetime.now(dt.UTC).isoformat().encode()),
        ]
        headers = [*record.headers, *error_headers]
        try:
            await self._producer.send_and_wait(
                self._dead_letter_topic, value=record.value, key=record.key, headers=headers
            )
        except _TOO_LARGE as refused:
            # The original bytes plus our headers exceed what the broker takes (the dead-letter
            # topic's max.message.bytes is below the input's) or REGEN_KAFKA__MAX_REQUEST_BYTES.
            # A dead letter that identifies the record beats none, but it cannot be re-driven,
            # and the input topic holds the original only until its retention runs out.
            value = record.value or b""
            truncated = [*headers, (DLQ_TRUNCATED_FROM, str(len(value)).encode())]
            try:
                await self._producer.send_and_wait(
                    self._dead_letter_topic,
                    value=value[:_TRUNCATED_VALUE_BYTES],
                    key=record.key,
                    headers=truncated,
                )
            except _TOO_LARGE as error:
                raise RecordRefused(f"the dead letter is too large: {error}") from error
            self._metrics.dead_letters_truncated.labels(reason).inc()
            # Sizes and position only: the value may be anything, of any size. The position
            # (topic, partition, offset) comes with the event's log coordinates.
            logger.warning(
                "dead letter truncated: the whole record was refused as too large",
                extra={
                    "dead_letter_topic": self._dead_letter_topic,
                    "reason": reason,
                    "value_bytes": len(value),
                    "kept_bytes": min(len(value), _TRUNCATED_VALUE_BYTES),
                    "max_request_bytes": self._max_request_bytes,
                    "error": type(refused).__name__,
                },
            )
        self._metrics.dead_letters.labels(reason).inc()
