"""Publishing results and dead letters to Kafka, keyed like the input record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream.kafka.publisher.usecase import DefaultPublisher

from service.domain import Failed, RegenerationSucceeded, ResultEvent
from service.processing import InputRecord

CLOUDEVENTS_JSON = "application/cloudevents+json; charset=UTF-8"
# Headers added to a dead letter; the original record's headers come first, unchanged.
DLQ_REASON = "regen-error-reason"
DLQ_MESSAGE = "regen-error-message"
DLQ_ORIGINAL_TOPIC = "regen-original-topic"
DLQ_ORIGINAL_PARTITION = "regen-original-partition"
DLQ_ORIGINAL_OFFSET = "regen-original-offset"
DLQ_FAILED_AT = "regen-failed-at"


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
    ) -> None:
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
        await publisher.publish(
            event.model_dump_json(exclude_none=True).encode(),
            key=record.key,
            headers={"content-type": CLOUDEVENTS_JSON},
        )

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
        await self._dead_letter_producer.send_and_wait(
            self._dead_letter_topic,
            value=record.value,
            key=record.key,
            headers=[*record.headers, *error_headers],
        )
