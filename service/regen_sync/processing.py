"""What happens to one input record: read it, regenerate, publish exactly one result.

Reading decides what an event needs. A valid event becomes a RegenerationTask, to run; input
that is invalid, or whose reading raised, is decided there and then: its pending event carries
its failed result. From there every event goes the same way: one result event, delivered (with
a dead letter first, for a failure) before the record counts as finished and its offset may be
committed.

Events waiting for the same object with the same coalescing key share one upstream call (a
``SharedCall``), made for the first of them. It closes when the call is about to go out, so it
serves every identical event that arrived while it waited for a slot, and none that arrived
after it went out. Describing an outcome that raises is tried ``max_handling_attempts`` times,
then the event fails as ``internal_error``; so does an event whose result or dead letter the
broker refuses for good (``RecordRefused``), at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from regen_sync.coalescing import SharedCall
from regen_sync.domain import (
    Failed,
    FailureReason,
    InvalidEvent,
    Outcome,
    RegenerationFailed,
    RegenerationTask,
    ResultEvent,
    internal_error_event,
    invalid_event_result,
    parse_event,
    plan,
    result_event,
)
from regen_sync.observability import EventObserver, EventSpan, Metrics, Tracing
from regen_sync.regeneration import Regenerator

logger = logging.getLogger(__name__)

_NO_LANE = "none"
"""The in-flight window of events decided as they were read: they call no upstream."""


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
        logger.warning("unreadable re-drive header ignored")
    return count or 0


class RecordRefused(Exception):
    """The broker will never take this record (too large, say): retrying cannot help."""


class Delivery(Protocol):
    async def deliver(
        self, record: InputRecord, result: ResultEvent, *, delivered: Callable[[], None]
    ) -> None:
        """Dead letter first (for a failure), then the result, each retried until Kafka has
        it; then ``delivered``. Raises RecordRefused if the broker will never take one."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    """An input record read and planned, waiting for its result: either it has a task to
    run, or it was decided as it was read and carries its result."""

    record: InputRecord
    observer: EventObserver
    task: RegenerationTask | None = None
    decided: RegenerationFailed | None = None
    """The result of input that is invalid, or whose reading raised (then ``task`` is None)."""
    event_id: str | None = None
    event_type: str | None = None
    coalescing_key: str | None = None
    """Computed while reading, where an error still turns into a result."""
    ordering_key: str | None = None
    """The object it changes; events decided as they were read are ordered after nothing."""
    lane: str = _NO_LANE
    """The in-flight window it counts against: one per upstream."""

    @property
    def trace(self) -> EventSpan | None:
        return self.observer.trace


class EventProcessor:
    def __init__(
        self,
        regenerator: Regenerator,
        delivery: Delivery,
        metrics: Metrics,
        *,
        event_source: str,
        max_event_bytes: int,
        max_handling_attempts: int,
        tracing: Tracing | None = None,
    ) -> None:
        self._regenerator = regenerator
        self._delivery = delivery
        self._metrics = metrics
        self._tracing = tracing or Tracing.disabled()
        self._event_source = event_source
        self._max_event_bytes = max_event_bytes
        self._max_handling_attempts = max_handling_attempts

    def read(self, record: InputRecord) -> PendingEvent:
        observer = EventObserver(
            self._metrics,
            self._tracing,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            headers=record.headers,
        )
        with observer.handling():
            try:
                return self._planned(record, observer)
            except Exception as error:
                # The record must still get its one outcome, and its offset must not be skipped.
                logger.exception("reading an event raised")
                observer.unreadable()
                decided = self._internal_error(record, None, None, error)
                return PendingEvent(record, observer, decided=decided)

    def _planned(self, record: InputRecord, observer: EventObserver) -> PendingEvent:
        parsed = parse_event(record.value, max_bytes=self._max_event_bytes)
        if isinstance(parsed, InvalidEvent):
            observer.received(parsed.event_id, parsed.event_type)
            logger.warning("invalid event", extra={"problems": list(parsed.problems)})
            decided = invalid_event_result(
                parsed, source=self._event_source, origin=record.origin, now=_now()
            )
            return PendingEvent(
                record,
                observer,
                decided=decided,
                event_id=parsed.event_id,
                event_type=parsed.event_type,
            )
        observer.received(parsed.id, parsed.type)
        task = plan(parsed, redrive=_redrive_count(record))
        return PendingEvent(
            record,
            observer,
            task=task,
            event_id=parsed.id,
            event_type=parsed.type,
            coalescing_key=task.coalescing_key,
            ordering_key=task.object_key,
            lane=task.operation.upstream,
        )

    async def complete(self, call: SharedCall[PendingEvent]) -> None:
        """One upstream call for the call's first event (none if it was decided as it was
        read), then one result for each event the call served."""
        first = call.first
        if first.task is None:
            assert first.decided is not None, "an event without a task was decided when read"
            decided = first.decided
            await self._finish(call, first, lambda: decided, coalesced=False)
            return
        with first.observer.handling():
            outcome = await self._outcome(first.task, call)
        finishing = []
        for pending in call.close():
            coalesced = pending is not first
            if coalesced:
                pending.observer.served_by(first.observer)
            describe = functools.partial(self._described, pending, outcome, first.task)
            finishing.append(self._finish(call, pending, describe, coalesced=coalesced))
        # Together: the results of one call go out in one produce request, not one after the
        # other (each waiting for the broker), which held the object's next call back.
        await _each(finishing)

    async def _outcome(self, task: RegenerationTask, call: SharedCall[PendingEvent]) -> Outcome:
        try:
            return await self._regenerator.regenerate(task, shared_call=call)
        except Exception as error:
            logger.exception("unexpected error during regeneration")
            return Outcome(
                Failed(FailureReason.INTERNAL_ERROR, f"internal error: {type(error).__name__}"),
                attempts=1,
            )

    def _described(
        self, pending: PendingEvent, outcome: Outcome, served_by: RegenerationTask
    ) -> ResultEvent:
        assert pending.task is not None, "only events with a task share a call"
        return result_event(
            pending.task, outcome, source=self._event_source, now=_now(), served_by=served_by
        )

    async def _finish(
        self,
        call: SharedCall[PendingEvent],
        pending: PendingEvent,
        describe: Callable[[], ResultEvent],
        *,
        coalesced: bool,
    ) -> None:
        with pending.observer.handling():
            result = await self._result(pending, describe)
            try:
                await self._deliver(call, pending, result, coalesced=coalesced)
            except RecordRefused as refusal:
                # Sending the same records again cannot help; a small internal_error result
                # and a dead letter of the input can still be published.
                logger.error(
                    "the broker refused the event's result or dead letter; failing it as "
                    "internal_error",
                    extra={"error": str(refusal)},
                )
                fallback = self._internal_error(
                    pending.record, pending.event_id, pending.event_type, refusal
                )
                # Refused again, it raises: the event stays unfinished, its offset uncommitted.
                await self._deliver(call, pending, fallback, coalesced=False)

    async def _result(
        self, pending: PendingEvent, describe: Callable[[], ResultEvent]
    ) -> ResultEvent:
        """The event's result event; if describing it keeps raising, its internal_error."""
        attempt = 1
        while True:
            try:
                return describe()
            except Exception as error:
                if attempt >= self._max_handling_attempts:
                    logger.exception(
                        "handling an event kept raising; failing it as internal_error",
                        extra={"attempts": attempt},
                    )
                    return self._internal_error(
                        pending.record, pending.event_id, pending.event_type, error
                    )
                logger.error(
                    "handling an event raised; trying again",
                    extra={"error": repr(error), "attempt": attempt},
                )
            await asyncio.sleep(min(2.0, 0.1 * 2 ** (attempt - 1)))
            attempt += 1

    async def _deliver(
        self,
        call: SharedCall[PendingEvent],
        pending: PendingEvent,
        result: ResultEvent,
        *,
        coalesced: bool,
    ) -> None:
        def delivered() -> None:
            call.finished(pending)
            pending.observer.published(result, coalesced=coalesced)

        await self._delivery.deliver(pending.record, result, delivered=delivered)

    def _internal_error(
        self,
        record: InputRecord,
        event_id: str | None,
        event_type: str | None,
        error: BaseException,
    ) -> RegenerationFailed:
        """The last-resort result: built from as little as possible, so that whatever broke
        the normal path cannot break this one too."""
        failure = Failed(
            FailureReason.INTERNAL_ERROR, f"internal error: {type(error).__name__}", retryable=True
        )
        return internal_error_event(
            event_id,
            event_type,
            failure,
            source=self._event_source,
            origin=record.origin,
            now=_now(),
        )


async def _each(finishing: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Runs them concurrently to their ends; then raises the first error, if any (the events
    whose delivery did not fail are finished all the same)."""
    if len(finishing) == 1:
        await finishing[0]
        return
    for ended in await asyncio.gather(*finishing, return_exceptions=True):
        if isinstance(ended, BaseException):
            raise ended


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
