"""Reliable delivery of an event's result: the dead letter first (for a failure), then the
result, each repeated until Kafka has it; only then does the event count as finished.

The record's offset must not be committed before its outcome is on Kafka, so a publication
that fails is repeated, with backoff, for as long as it takes (or until the service shuts
down). A record the broker refuses for good (``RecordRefused``) is not repeated: the caller
decides what the event ends as instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from regen_sync.domain import RegenerationFailed, ResultEvent
from regen_sync.observability import Metrics
from regen_sync.processing import InputRecord, RecordRefused

logger = logging.getLogger(__name__)


class ResultSink(Protocol):
    """Publishes results and dead letters; raises RecordRefused for a record the broker will
    never take."""

    async def publish_result(self, record: InputRecord, event: ResultEvent) -> None: ...

    async def dead_letter(self, record: InputRecord, failed: RegenerationFailed) -> None: ...


class ReliableDelivery:
    def __init__(
        self,
        sink: ResultSink,
        metrics: Metrics,
        *,
        first_retry_seconds: float = 0.2,
        max_retry_seconds: float = 5.0,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._first_retry_seconds = first_retry_seconds
        self._max_retry_seconds = max_retry_seconds

    async def deliver(
        self, record: InputRecord, result: ResultEvent, *, delivered: Callable[[], None]
    ) -> None:
        """Dead letter first (for a failure), then the result; then ``delivered``, the event
        is finished. Once begun, a delivery is seen through even when its caller is cancelled
        (a partition handed over, a shutdown): cut short, its records could still reach Kafka
        without the event counting as finished, and the partition's next owner would publish
        them again. A second cancellation (the broker is away, say) gives it up."""
        await _seen_through(self._deliver(record, result, delivered))

    async def _deliver(
        self, record: InputRecord, result: ResultEvent, delivered: Callable[[], None]
    ) -> None:
        if isinstance(result, RegenerationFailed):
            await self._until_published(lambda: self._sink.dead_letter(record, result))
        await self._until_published(lambda: self._sink.publish_result(record, result))
        delivered()

    async def _until_published(self, publish: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            try:
                await publish()
                return
            except RecordRefused:
                raise
            # A cancellation (shutdown) is no Exception: it ends the loop, it is not retried.
            except Exception as error:
                failures += 1
                self._metrics.publish_errors.inc()
                logger.error(
                    "publishing failed; retrying", extra={"error": repr(error), "attempt": failures}
                )
            delay = self._first_retry_seconds * 2 ** min(failures - 1, 16)
            await asyncio.sleep(min(delay, self._max_retry_seconds))


async def _seen_through(delivery: Coroutine[Any, Any, None]) -> None:
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
