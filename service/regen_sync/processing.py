"""What happens to one input record: read it, regenerate, publish exactly one result.

A valid event becomes a RegenerationTask and its upstream call; an invalid one becomes a
failure at once. Either way one result event is published, and every failure also goes to
the dead-letter topic, before the record counts as finished (and its offset may be committed).

Events waiting for the same object with the same coalescing key are completed as a group:
one upstream call, made for the first of them, and one result per event. The group is
sealed when that call is about to go out, so it serves every identical event that arrived
while it waited for a slot, and none that arrived after it went out. Handling that raises is
tried ``max_handling_attempts`` times, then the event fails as ``internal_error``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from regen_sync.coalescing import SharedCall
from regen_sync.domain import (
    Failed,
    FailureReason,
    InvalidEvent,
    Outcome,
    RegenerationTask,
    ResultEvent,
    Succeeded,
    internal_error_event,
    invalid_event_outcome,
    parse_event,
    plan,
    result_event,
)
from regen_sync.observability import NO_OPERATION, EventSpan, Metrics, Tracing
from regen_sync.regeneration import Regenerator

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


REDRIVE_HEADER = "regen-redrive"
"""Set by ``regen-sync redrive`` on a republished record: how often the event was re-driven
(its Zuora Idempotency-Keys start afresh with each re-drive)."""


def redrive_count(headers: Sequence[tuple[str, bytes]]) -> int | None:
    """The count of a record's last ``regen-redrive`` header (the one ``redrive`` added last);
    None when it has none, or one that is not a number."""
    values = [value for name, value in headers if name == REDRIVE_HEADER]
    text = values[-1].decode("ascii", "replace") if values else ""
    return int(text) if text.isascii() and text.isdigit() else None


def _redrive_count(record: InputRecord) -> int:
    count = redrive_count(record.headers)
    if count is None and any(name == REDRIVE_HEADER for name, _ in record.headers):
        # Only `redrive` writes it; a hand-made value cannot be trusted to be new.
        logger.warning("unreadable re-drive header ignored", extra=record.log_fields())
    return count or 0


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record whose reading raised: a bug, not bad input; it fails as internal_error."""

    error: str


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An input record read and planned, waiting for its outcome."""

    record: InputRecord
    subject: RegenerationTask | InvalidEvent | Unreadable
    coalescing_key: str | None = None
    """Computed while reading, where an error still turns into a result."""
    trace: EventSpan | None = None

    @property
    def ordering_key(self) -> str | None:
        # Invalid events have no object: they run at once, ordered after nothing.
        return self.subject.object_key if isinstance(self.subject, RegenerationTask) else None

    @property
    def lane(self) -> str:
        """The in-flight window it counts against: one per upstream."""
        if isinstance(self.subject, RegenerationTask):
            return self.subject.operation.upstream
        return "none"


class EventGroup(Protocol):
    """Events one upstream call may serve: the first one, and the identical events waiting
    behind it at the moment the call goes out (``seal``; until then, the first alone)."""

    @property
    def first(self) -> PendingEvent: ...

    def seal(self) -> Sequence[PendingEvent]: ...

    def finished(self, event: PendingEvent) -> None:
        """``event``'s result is published: its offset may be committed."""


class _SealedOnClose:
    """An EventGroup as the regenerator's SharedCall (a bridge: the coalescing seam's owner
    replaces EventGroup with SharedCall)."""

    def __init__(self, group: EventGroup) -> None:
        self._group = group
        self.served: Sequence[PendingEvent] = [group.first]

    @property
    def first(self) -> PendingEvent:
        return self._group.first

    def close(self) -> Sequence[PendingEvent]:
        self.served = self._group.seal()
        return self.served

    def finished(self, item: PendingEvent) -> None:
        self._group.finished(item)


class RecordRefused(Exception):
    """The broker will never take this record (too large, say): retrying cannot help."""


class ResultSink(Protocol):
    """Publishes results and dead letters. Failures are retried until they succeed, except
    RecordRefused, which makes the event fail as internal_error instead."""

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
        max_handling_attempts: int,
        tracing: Tracing | None = None,
    ) -> None:
        self._regenerator = regenerator
        self._tracing = tracing or Tracing.disabled()
        self._sink = sink
        self._metrics = metrics
        self._event_source = event_source
        self._max_event_bytes = max_event_bytes
        self._max_handling_attempts = max_handling_attempts

    def read(self, record: InputRecord) -> PendingEvent:
        trace = self._tracing.start_event(
            record.headers, topic=record.topic, partition=record.partition, offset=record.offset
        )
        try:
            subject = self._plan(record)
            if isinstance(subject, RegenerationTask):
                return PendingEvent(record, subject, subject.coalescing_key, trace)
            return PendingEvent(record, subject, trace=trace)
        except Exception as error:
            # The record must still get its one outcome, and its offset must not be skipped.
            logger.exception("reading an event raised", extra=record.log_fields())
            self._metrics.event_received(None)
            return PendingEvent(record, Unreadable(type(error).__name__), trace=trace)

    def _plan(self, record: InputRecord) -> RegenerationTask | InvalidEvent:
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
        return plan(parsed, redrive=_redrive_count(record))

    async def complete(self, group: EventGroup) -> None:
        """One upstream call for the group's first event, then one result for each event
        the call served."""
        leader = group.first.subject
        shared_call = _SealedOnClose(group)
        if isinstance(leader, Unreadable):
            await self._give_up(group, shared_call.served, leader.error)
            return
        outcome: Outcome | None = None
        published = 0
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_handling_attempts),
                wait=wait_exponential(multiplier=0.1, max=2),
                retry=retry_if_exception_type(Exception),
                before_sleep=lambda state: self._handling_failed(group.first.record, state),
                reraise=True,
            ):
                with attempt:
                    if outcome is None:
                        with self._tracing.within(group.first.trace):
                            outcome = await self._outcome(leader, shared_call)
                    # Events already published are not published again on the next try.
                    while published < len(shared_call.served):
                        await self._publish(group, shared_call.served[published], outcome)
                        published += 1
        except Exception as error:
            logger.exception(
                "handling an event kept raising; failing it as internal_error",
                extra=group.first.record.log_fields() | {"attempts": self._max_handling_attempts},
            )
            await self._give_up(group, shared_call.served[published:], type(error).__name__)

    async def _outcome(
        self, subject: RegenerationTask | InvalidEvent, shared_call: SharedCall[PendingEvent]
    ) -> Outcome:
        if isinstance(subject, InvalidEvent):
            return invalid_event_outcome(subject)
        try:
            return await self._regenerator.regenerate(subject, shared_call=shared_call)
        except Exception as error:
            logger.exception(
                "unexpected error during regeneration", extra={"event_id": subject.event.id}
            )
            return Outcome(
                Failed(FailureReason.INTERNAL_ERROR, f"internal error: {type(error).__name__}"),
                attempts=1,
            )

    async def _publish(self, group: EventGroup, pending: PendingEvent, outcome: Outcome) -> None:
        first = group.first
        record, subject, leader = pending.record, pending.subject, first.subject
        assert not isinstance(subject, Unreadable), "unreadable events are never grouped"
        assert not isinstance(leader, Unreadable), "unreadable events are never grouped"
        result = outcome.result
        operation = subject.operation if isinstance(subject, RegenerationTask) else NO_OPERATION
        served_by = leader if isinstance(leader, RegenerationTask) else None
        event = result_event(
            subject,
            outcome,
            source=self._event_source,
            origin=record.origin,
            now=dt.datetime.now(dt.UTC),
            served_by=served_by,
        )
        coalesced = subject is not leader
        if coalesced:
            self._tracing.link(pending.trace, served_by=first.trace)
        await _seen_through(self._deliver(group, pending, event, result))
        self._metrics.results.labels(
            operation,
            "failed" if isinstance(result, Failed) else "succeeded",
            result.reason if isinstance(result, Failed) else "",
        ).inc()
        if coalesced:
            self._metrics.coalesced.labels(operation).inc()
        log_fields = record.log_fields() | {
            "event_id": event.data.sourceEventId,
            "type": event.data.sourceEventType,
            "operation": operation,
            "attempts": outcome.attempts,
            "served_by": event.data.servedByEventId if coalesced else None,
        }
        if isinstance(result, Failed):
            logger.warning(
                "regeneration failed",
                extra=log_fields | {"reason": result.reason, "http_status": result.http_status},
            )
        else:
            logger.info("regeneration succeeded", extra=log_fields)

    async def _give_up(
        self, group: EventGroup, unpublished: Sequence[PendingEvent], error: str
    ) -> None:
        failure = Failed(FailureReason.INTERNAL_ERROR, f"internal error: {error}", retryable=True)
        for pending in unpublished:
            subject = pending.subject
            event_id: str | None = None
            event_type: str | None = None
            if isinstance(subject, RegenerationTask):
                event_id, event_type = subject.event.id, subject.event.type
            elif isinstance(subject, InvalidEvent):
                event_id, event_type = subject.event_id, subject.event_type
            event = internal_error_event(
                event_id,
                event_type,
                failure,
                source=self._event_source,
                origin=pending.record.origin,
                now=dt.datetime.now(dt.UTC),
            )
            await _seen_through(self._deliver(group, pending, event, failure))
            self._metrics.results.labels(NO_OPERATION, "failed", failure.reason).inc()

    async def _deliver(
        self,
        group: EventGroup,
        pending: PendingEvent,
        event: ResultEvent,
        result: Succeeded | Failed,
    ) -> None:
        """Dead letter first (for failures), then the result: once the result is out, the
        record counts as finished (``group.finished``), and so does its trace. Callers see it
        through (``_seen_through``)."""
        record = pending.record
        with self._tracing.within(pending.trace):
            if isinstance(result, Failed):
                await self._until_published(record, lambda: self._sink.dead_letter(record, result))
                self._metrics.dead_letters.labels(result.reason).inc()
            await self._until_published(record, lambda: self._sink.publish_result(record, event))
        group.finished(pending)
        self._tracing.end_event(
            pending.trace,
            event_id=event.data.sourceEventId,
            event_type=event.data.sourceEventType,
            operation=event.data.operation,
            failure_reason=result.reason if isinstance(result, Failed) else None,
        )

    def _handling_failed(self, record: InputRecord, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.error(
            "handling an event raised; trying again",
            extra=record.log_fields() | {"error": repr(error), "attempt": state.attempt_number},
        )

    async def _until_published(
        self, record: InputRecord, publish: Callable[[], Awaitable[None]]
    ) -> None:
        # The record's offset must not be committed before its outcome is on Kafka, so a
        # publish is repeated until it goes through (or the service shuts down).
        async for attempt in AsyncRetrying(
            # A cancellation (shutdown) is no Exception: it must end the loop, not be retried.
            retry=retry_if_exception(
                lambda error: isinstance(error, Exception) and not isinstance(error, RecordRefused)
            ),
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


async def _seen_through(delivery: Coroutine[Any, Any, None]) -> None:
    """Once begun, a delivery is seen through even when its event is cancelled (a partition
    handed over, a shutdown): cut short, its records could still reach Kafka without the event
    counting as finished, and the partition's next owner would publish them again. A second
    cancellation (the broker is away, say) gives the delivery up."""
    task = asyncio.ensure_future(delivery)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            task.cancel()
            raise
        raise
