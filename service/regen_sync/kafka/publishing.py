"""Publishing results and dead letters to Kafka, keyed like the input record."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError
from faststream.kafka.publisher.usecase import DefaultPublisher

from regen_sync.domain import Failed, RegenerationSucceeded, ResultEvent
from regen_sync.observability import Metrics, Tracing
from regen_sync.processing import InputRecord, RecordRefused

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=UTF-8"
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


class KafkaResultSink:
    """Results go through FastStream publishers (documented in the AsyncAPI, measured by its
    middleware). Dead letters go through a plain aiokafka producer: FastStream's publish takes
    text headers, and a dead letter must carry the input's header bytes unchanged."""

    def __init__(
        self,
        succeeded: DefaultPublisher,
        failed: DefaultPublisher,
        dead_letter_topic: str,
        producer_options: dict[str, Any],
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing or Tracing.disabled()
        self._metrics = metrics
        self._succeeded = succeeded
        self._failed = failed
        self._dead_letter_topic = dead_letter_topic
        self._producer_options = producer_options
        self._dead_letter_producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # aiokafka binds a producer to the running loop, so it is built here, not in __init__.
        self._dead_letter_producer = AIOKafkaProducer(**self._producer_options)
        await self._dead_letter_producer.start()

    async def stop(self) -> None:
        if self._dead_letter_producer is not None:
            await self._dead_letter_producer.stop()

    async def publish_result(self, record: InputRecord, event: ResultEvent) -> None:
        publisher = self._succeeded if isinstance(event, RegenerationSucceeded) else self._failed
        # A failed publication ends its span with the error (the tracer records exceptions).
        with self._tracing.publication(publisher.topic):
            headers = {"content-type": CLOUDEVENTS_JSON}
            self._tracing.inject(headers)
            try:
                await publisher.publish(
                    event.model_dump_json(exclude_none=True).encode(),
                    key=record.key,
                    headers=headers,
                )
            except _TOO_LARGE as error:
                raise RecordRefused(f"the result event is too large: {error}") from error

    async def dead_letter(self, record: InputRecord, failure: Failed) -> None:
        error_headers = [
            (DLQ_REASON, failure.reason.value.encode()),
            (DLQ_MESSAGE, failure.message[:1000].encode()),
            (DLQ_ORIGINAL_TOPIC, record.topic.encode()),
            (DLQ_ORIGINAL_PARTITION, str(record.partition).encode()),
            (DLQ_ORIGINAL_OFFSET, str(record.offset).encode()),
            (DLQ_FAILED_AT, dt.datetime.now(dt.UTC).isoformat().encode()),
        ]
        if self._dead_letter_producer is None:
            raise RuntimeError("the dead-letter producer is not started")
        headers = [*record.headers, *error_headers]
        try:
            await self._dead_letter_producer.send_and_wait(
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
                await self._dead_letter_producer.send_and_wait(
                    self._dead_letter_topic,
                    value=value[:_TRUNCATED_VALUE_BYTES],
                    key=record.key,
                    headers=truncated,
                )
            except _TOO_LARGE as error:
                raise RecordRefused(f"the dead letter is too large: {error}") from error
            self._metrics.dead_letters_truncated.labels(failure.reason).inc()
            # Sizes and position only: the value may be anything, of any size.
            logger.warning(
                "dead letter truncated: the whole record was refused as too large",
                extra=record.log_fields()
                | {
                    "dead_letter_topic": self._dead_letter_topic,
                    "reason": failure.reason,
                    "value_bytes": len(value),
                    "kept_bytes": min(len(value), _TRUNCATED_VALUE_BYTES),
                    "max_request_bytes": self._producer_options.get("max_request_size"),
                    "error": type(refused).__name__,
                },
            )
