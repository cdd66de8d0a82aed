"""Committing the input's offsets, and reporting the consumer lag.

Offsets are committed by this module only (the subscriber's ack policy is manual), at a
fixed interval, on partition revocation and at shutdown; always the position below which
every record has its result published (see ``Offsets``). Nothing that fails elsewhere (the
lag report, a metric, a revoked partition) may stop the committing: a process that stops
committing replays everything it finished after its next crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from regen_sync.kafka.offsets import Offsets, Partition
from regen_sync.observability import Metrics

logger = logging.getLogger(__name__)

COMMIT_TIMEOUT_SECONDS = 5.0
"""aiokafka's commit waits for the group coordinator however long the broker is away; a commit
that takes longer counts as failed, and its positions go with the next one."""
LAG_LOOKUP_TIMEOUT_SECONDS = 5.0
"""Bound on the offset look-ups of one lag report; a report that times out is skipped."""

ConsumerSource = Callable[[], AIOKafkaConsumer | None]
"""The input consumer: FastStream creates it when the broker starts (None before)."""


class Committer:
    def __init__(
        self,
        consumer: ConsumerSource,
        offsets: Offsets,
        metrics: Metrics,
        *,
        interval_seconds: float,
    ) -> None:
        self._consumer = consumer
        self._offsets = offsets
        self._metrics = metrics
        self._interval = interval_seconds
        self._loop: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._group_committed: dict[Partition, int] = {}
        """Committed offsets read from the group for owned partitions this process has not
        committed itself yet (lag of idle partitions)."""

    async def start(self) -> None:
        # A coroutine, not a plain method: FastStream runs a plain startup hook in a thread.
        self._loop = asyncio.create_task(self._commit_periodically())

    async def stop(self) -> None:
        """End the periodic commits, then commit what finished. Never raises."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        # When it fails, what it would have committed is read again by the next owner.
        await self.commit()

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.commit()
            await _survive("consumer lag report", self.report_lag)

    async def commit(self, only: set[Partition] | None = None) -> None:
        """Commit the positions that moved (of ``only``, if given). Never raises: a commit
        the broker refuses or does not answer in time is counted as failed, and its positions
        go with the next one."""
        await _survive("offset commit", lambda: self._commit(only))

    async def _commit(self, only: set[Partition] | None) -> None:
        consumer = self._consumer()
        if consumer is None:
            return
        async with self._lock:
            positions = self._offsets.commit_positions(only)
            if not positions:
                return
            try:
                await asyncio.wait_for(
                    consumer.commit({TopicPartition(*p): o for p, o in positions.items()}),
                    COMMIT_TIMEOUT_SECONDS,
                )
            except (KafkaError, TimeoutError) as error:
                self._metrics.commits.labels("failure").inc()
                logger.warning("offset commit failed", extra={"error": repr(error)})
                return
            self._offsets.committed(positions)
            self._metrics.commits.labels("success").inc()

    def forget(self, partitions: set[Partition]) -> None:
        """Partitions handed over: their next owner reports their lag now."""
        for partition in partitions:
            self._group_committed.pop(partition, None)
            # A stale series beside the new owner's would double the lag.
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(partition.topic, str(partition.partition))

    async def report_lag(self) -> None:
        """regen_consumer_lag for every owned partition, idle ones included: end offset minus
        committed offset.

        Exported by the service itself so dashboards and autoscalers need no lag exporter. The
        end offset is the high watermark the last fetch reported, or asked of the broker for a
        partition not fetched from yet. Partitions revoked meanwhile are left alone."""
        consumer = self._consumer()
        owned, assignment = self._offsets.owned, self._offsets.assignment
        if consumer is None or not owned:
            return
        ends: dict[Partition, int] = {}
        for partition in owned:
            high_watermark = _high_watermark(consumer, partition)
            if high_watermark is not None:
                ends[partition] = high_watermark
        unknown = owned - ends.keys()
        unread = {p for p in owned if self._offsets.committed_position(p) is None}
        unread -= self._group_committed.keys()
        try:
            async with asyncio.timeout(LAG_LOOKUP_TIMEOUT_SECONDS):
                if unknown:
                    offsets = await consumer.end_offsets([TopicPartition(*p) for p in unknown])
                    ends |= {Partition(tp.topic, tp.partition): end for tp, end in offsets.items()}
                for partition in unread:
                    committed = await consumer.committed(TopicPartition(*partition))
                    self._group_committed[partition] = committed or 0
        except (KafkaError, TimeoutError) as error:
            # The broker is away; the fetches and commits already say so. Next interval.
            logger.debug("consumer lag look-up failed", extra={"error": repr(error)})
            return
        if self._offsets.assignment != assignment:
            return  # revoked while looking up: these partitions are reported by their owners
        for partition, end in ends.items():
            committed = self._offsets.committed_position(partition)
            if committed is None:
                committed = self._group_committed.get(partition, 0)
            self._metrics.consumer_lag.labels(partition.topic, str(partition.partition)).set(
                max(0, end - committed)
            )


def _high_watermark(consumer: AIOKafkaConsumer, partition: Partition) -> int | None:
    tp = TopicPartition(*partition)
    # aiokafka asserts that the partition is assigned; the group may have moved it already.
    if tp not in consumer.assignment():
        return None
    high_watermark: int | None = consumer.highwater(tp)
    return high_watermark


async def _survive(what: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run a step of the offset bookkeeping; an error is logged, never passed on, so that it
    cannot end the commit loop or keep a shutdown from closing the clients."""
    try:
        await step()
    except Exception:
        logger.exception(f"{what} failed; carrying on")
