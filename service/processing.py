"""What happens to one input record: read it, regenerate, publish exactly one result.

A valid event becomes a RegenerationTask and its upstream call; an invalid one becomes a
failure at once. Either way one result event is published, and every failure also goes to
the dead-letter topic, before the record counts as finished (and its offset may be committed).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from service.domain import (
    Failed,
    FailureReason,
    InvalidEvent,
    Outcome,
    RegenerationTask,
    ResultEvent,
    invalid_event_outcome,
    parse_event,
    plan,
    result_event,
)
from service.observability import NO_OPERATION, Metrics
from service.regeneration import Regenerator

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InputRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    def log_fields(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class ResultSink(Protocol):
    async def publish_result(self, record: InputRecord, event: ResultEvent) -> None: ...

    async def dead_letter(self, record: InputRecord, failure: Failed) -> None: ...


class EventProcessor:
    def __init__(
        self,
        regenerator: Regenerator,
        sink: ResultSink,
        metrics: Metrics,
        *,
        event_source: str,
        max_event_bytes: int,
    ) -> None:
        self._regenerator = regenerator
        self._sink = sink
        self._metrics = metrics
        self._event_source = event_source
        self._max_event_bytes = max_event_bytes

    def read(self, record: InputRecord) -> RegenerationTask | InvalidEvent:
        parsed = parse_event(record.value, max_bytes=self._max_event_bytes)
        if isinstance(parsed, InvalidEvent):
            self._metrics.event_received(parsed.event_type)
            logger.warning(
                "invalid event",
                extra=record.log_fields()
                | {"event_id": parsed.event_id, "type": parsed.event_type}
                | {"problems": list(parsed.problems)},
            )
            return parsed
        self._metrics.event_received(parsed.type)
        return plan(parsed)

    async def complete(self, record: InputRecord, subject: RegenerationTask | InvalidEvent) -> None:
        if isinstance(subject, InvalidEvent):
            outcome = invalid_event_outcome(subject)
        else:
            outcome = await self._regenerate(record, subject)
        result = outcome.result
        operation = subject.operation if isinstance(subject, RegenerationTask) else NO_OPERATION
        event = result_event(
            subject,
            outcome,
            source=self._event_source,
            origin=record.origin,
            now=dt.datetime.now(dt.UTC),
        )
        if isinstance(result, Failed):
            await self._until_published(record, lambda: self._sink.dead_letter(record, result))
            self._metrics.dead_letters.labels(result.reason).inc()
        await self._until_published(record, lambda: self._sink.publish_result(record, event))
        self._metrics.results.labels(
            operation,
            "failed" if isinstance(result, Failed) else "succeeded",
            result.reason if isinstance(result, Failed) else "",
        ).inc()
        log_fields = record.log_fields() | {
            "event_id": event.data.sourceEventId,
            "type": event.data.sourceEventType,
            "operation": operation,
            "attempts": outcome.attempts,
        }
        if isinstance(result, Failed):
            logger.warning(
                "regeneration failed",
                extra=log_fields | {"reason": result.reason, "http_status": result.http_status},
            )
        else:
            logger.info("regeneration succeeded", extra=log_fields)

    async def _regenerate(self, record: InputRecord, task: RegenerationTask) -> Outcome:
        try:
            return await self._regenerator.regenerate(task)
        except Exception as error:
            logger.exception(
                "unexpected error during regeneration",
                extra=record.log_fields() | {"event_id": task.event.id},
            )
            return Outcome(
                Failed(FailureReason.INTERNAL_ERROR, f"internal error: {type(error).__name__}"),
                attempts=1,
            )

    async def _until_published(
        self, record: InputRecord, publish: Callable[[], Awaitable[None]]
    ) -> None:
        # The record's offset must not be committed before its outcome is on Kafka, so a
        # publish is repeated until it goes through (or the service shuts down).
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=lambda state: self._publish_failed(record, state),
        ):
            with attempt:
                await publish()

    def _publish_failed(self, record: InputRecord, state: RetryCallState) -> None:
        self._metrics.publish_errors.inc()
        error = state.outcome.exception() if state.outcome else None
        logger.error(
            "publishing failed; retrying",
            extra=record.log_fields() | {"error": repr(error), "attempt": state.attempt_number},
        )
