"""What one event shows operators, in one place: its log coordinates, its trace, and, once its
result is published, the result metrics, the result log line and the end of its span."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from regen_sync.domain import RegenerationFailed, ResultEvent
from regen_sync.observability.logging import LOG_FIELDS, logged_with
from regen_sync.observability.metrics import NO_OPERATION, Metrics
from regen_sync.observability.tracing import EventSpan, Tracing

logger = logging.getLogger("regen_sync.processing")
"""The result lines keep the logger name they always had."""


class EventObserver:
    """One event's metrics, log lines and trace. Made as its record is read."""

    __slots__ = ("_fields", "_metrics", "_tracing", "trace")

    def __init__(
        self,
        metrics: Metrics,
        tracing: Tracing,
        *,
        topic: str,
        partition: int,
        offset: int,
        headers: Sequence[tuple[str, bytes]],
    ) -> None:
        self._metrics = metrics
        self._tracing = tracing
        self.trace: EventSpan | None = tracing.start_event(
            headers, topic=topic, partition=partition, offset=offset
        )
        self._fields: dict[str, object] = {"topic": topic, "partition": partition, "offset": offset}

    def handling(self) -> contextlib.AbstractContextManager[None]:
        """While the event is handled: lines logged carry its coordinates, and spans and trace
        headers made belong to its trace."""
        if self.trace is None:  # tracing off: the cheap path, several times per event
            return logged_with(self._fields)
        return self._handling_traced()

    @contextlib.contextmanager
    def _handling_traced(self) -> Iterator[None]:
        with logged_with(self._fields), self._tracing.within(self.trace):
            yield

    def received(self, event_id: str | None, event_type: str | None) -> None:
        """The record was read; its event id and type, when it has readable ones, join the
        coordinates of the lines logged from now on."""
        self._metrics.event_received(event_type)
        bound = self._fields
        self._fields = bound | {"event_id": event_id, "type": event_type}
        if LOG_FIELDS.get() is bound:  # being handled: the lines from here on carry them
            LOG_FIELDS.set(self._fields)

    def unreadable(self) -> None:
        self._metrics.event_received(None)

    def served_by(self, other: EventObserver) -> None:
        """The event's outcome came from ``other``'s upstream call (coalescing)."""
        self._tracing.link(self.trace, served_by=other.trace)

    def published(self, result: ResultEvent, *, coalesced: bool) -> None:
        """The event's result (and its dead letter, for a failure) is on Kafka."""
        data = result.data
        operation = data.operation or NO_OPERATION
        reason = result.data.reason if isinstance(result, RegenerationFailed) else None
        self._metrics.results.labels(
            operation, "succeeded" if reason is None else "failed", reason or ""
        ).inc()
        if coalesced:
            self._metrics.coalesced.labels(operation).inc()
        with logged_with(self._fields):
            fields = {
                "operation": operation,
                "attempts": data.attempts,
                "served_by": data.servedByEventId if coalesced else None,
            }
            if isinstance(result, RegenerationFailed):
                logger.warning(
                    "regeneration failed",
                    extra=fields | {"reason": reason, "http_status": result.data.httpStatus},
                )
            else:
                logger.info("regeneration succeeded", extra=fields)
        self._tracing.end_event(
            self.trace,
            event_id=data.sourceEventId,
            event_type=data.sourceEventType,
            operation=data.operation,
            failure_reason=reason,
        )
