"""Reading the input topic: hand each record to the dispatcher, commit what is finished, and
hand partitions over cleanly when the consumer group rebalances.

Offsets are committed by this module only (the subscriber's ack policy is manual), at a
fixed interval, on partition revocation and at shutdown; always the position below which
every record has its result published. Nothing that fails elsewhere (the lag report, a
metric, a revoked partition) may stop the committing: a process that stops committing
replays everything it finished after its next crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber
from faststream.message import StreamMessage

from regen_sync.kafka.dispatcher import Dispatcher
from regen_sync.kafka.offsets import OffsetTracker, Partition
from regen_sync.observability import Metrics
from regen_sync.processing import EventProcessor, InputRecord, PendingEvent
from regen_sync.resilience import GroupShare

logger = logging.getLogger(__name__)

COMMIT_TIMEOUT_SECONDS = 5.0
"""aiokafka's commit waits for the group coordinator however long the broker is away; a commit
that takes longer counts as failed, and its positions go with the next one."""
_UNKNOWN_PARTITION_COUNT = 1_000_000
"""Stands in for a partition count the metadata lacks: it makes the share the minimum, 1."""
LAG_LOOKUP_TIMEOUT_SECONDS = 5.0
"""Bound on the offset look-ups of one lag report; a report that times out is skipped."""


async def parse_records_with_any_headers(
    records: tuple[ConsumerRecord[Any, Any], ...],
    parse: Callable[[tuple[ConsumerRecord[Any, Any], ...]], Awaitable[StreamMessage[Any]]],
) -> StreamMessage[Any]:
    """The subscriber's parser: FastStream's own, for records with any header bytes.

    FastStream decodes every header value as UTF-8, and a poll holding one that is not
    (Kafka headers are bytes) raised before the handler ran: the records were lost without an
    outcome. FastStream's decoded headers are not used here; the handler reads the records'
    own, so they are handed on unchanged, bytes and all."""
    try:
        return await parse(records)
    except UnicodeDecodeError:
        readable = tuple(
            dataclasses.replace(
                record,
                headers=[
                    (name, value.decode("utf-8", "replace").encode())
                    for name, value in record.headers
                ],
            )
            for record in records
        )
        message = await parse(readable)
        message.raw_message = records
        return message


class Intake:
    def __init__(
        self,
        processor: EventProcessor,
        dispatcher: Dispatcher[PendingEvent],
        tracker: OffsetTracker,
        metrics: Metrics,
        share: GroupShare,
        *,
        commit_interval_seconds: float,
        rebalance_grace_seconds: float,
    ) -> None:
        self._processor = processor
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._metrics = metrics
        self._share = share
        self._commit_interval = commit_interval_seconds
        self._rebalance_grace = rebalance_grace_seconds
        self._subscriber: LogicSubscriber[Any] | None = None
        self._commit_loop: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()
        self._owned: frozenset[Partition] = frozenset()
        self._assignment = 0
        """Counts revocations: records read under an earlier assignment are not admitted."""
        self._group_committed: dict[Partition, int] = {}
        """Committed offsets read from the group for owned partitions this process has not
        committed itself yet (lag of idle partitions)."""

    def attach(self, subscriber: LogicSubscriber[Any]) -> None:
        self._subscriber = subscriber

    @property
    def _consumer(self) -> AIOKafkaConsumer | None:
        return self._subscriber.consumer if self._subscriber else None

    async def on_records(self, message: KafkaMessage) -> None:
        """The subscriber's handler, for one poll's records. Returns once every record is
        admitted, not finished; admission waits while the record's lane is full.

        A record is admitted only while its partition is still ours under the assignment it
        was read in: after a revocation, the rest of the poll belongs to the next owner (this
        process too, if the partition comes back: it then reads from the committed offset)."""
        polled = message.raw_message
        assert isinstance(polled, tuple), "the input subscriber is a batch subscriber"
        assignment = self._assignment
        for raw in polled:
            partition = Partition(raw.topic, raw.partition)

            def still_ours(partition: Partition = partition) -> bool:
                return self._assignment == assignment and partition in self._owned

            if not still_ours():
                return
            record = InputRecord(
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                key=raw.key,
                value=raw.value,
                headers=tuple(raw.headers or ()),
            )
            pending = self._processor.read(record)
            await self._dispatcher.submit(
                partition,
                record.offset,
                pending,
                key=pending.ordering_key,
                lane=pending.lane,
                still_wanted=still_ours,
            )

    def start_committing(self) -> None:
        self._commit_loop = asyncio.create_task(self._commit_periodically())

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval)
            await _survive("periodic offset commit", self.commit)
            await _survive("consumer lag report", self._report_lag)

    async def _report_lag(self) -> None:
        """regen_consumer_lag for every owned partition, idle ones included: end offset minus
        committed offset.

        Exported by the service itself so dashboards and autoscalers need no lag exporter. The
        end offset is the high watermark the last fetch reported, or asked of the broker for a
        partition not fetched from yet. Partitions revoked meanwhile are left alone."""
        consumer = self._consumer
        if consumer is None or not self._owned:
            return
        assignment, owned = self._assignment, self._owned
        ends: dict[Partition, int] = {}
        for partition in owned:
            high_watermark = _high_watermark(consumer, partition)
            if high_watermark is not None:
                ends[partition] = high_watermark
        unknown = owned - ends.keys()
        unread = {p for p in owned if self._tracker.committed_position(p) is None}
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
        if self._assignment != assignment:
            return  # revoked while looking up: these partitions are reported by their owners
        for partition, end in ends.items():
            committed = self._tracker.committed_position(partition)
            if committed is None:
                committed = self._group_committed.get(partition, 0)
            self._metrics.consumer_lag.labels(partition.topic, str(partition.partition)).set(
                max(0, end - committed)
            )

    async def commit(self, only: set[Partition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        async with self._commit_lock:
            positions = self._tracker.commit_positions(only)
            if not positions:
                return
            try:
                await asyncio.wait_for(
                    consumer.commit(
                        {TopicPartition(p.topic, p.partition): o for p, o in positions.items()}
                    ),
                    COMMIT_TIMEOUT_SECONDS,
                )
            except (KafkaError, TimeoutError) as error:
                # Not fatal: the positions stay pending and go with the next commit.
                self._metrics.commits.labels("failure").inc()
                logger.warning("offset commit failed", extra={"error": repr(error)})
                return
            self._tracker.committed(positions)
            self._metrics.commits.labels("success").inc()

    async def stop(self, grace_seconds: float) -> None:
        """Stop reading, give in-flight events the grace period, commit what finished.

        Never raises: the caller must go on to close the clients whatever happened here."""
        consumer = self._consumer
        if consumer is not None:
            consumer.pause(*consumer.assignment())
        finished = await self._dispatcher.drain(grace_seconds)
        if self._commit_loop is not None:
            self._commit_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_loop
        # When it fails, what it would have committed is read again by the next owner.
        await _survive("final offset commit", self.commit)
        logger.info(
            "stopped consuming",
            extra={"all_in_flight_finished": finished, "grace_seconds": grace_seconds},
        )

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _HandOverOnRevoke(self)

    def assigned(self, partitions: set[Partition]) -> None:
        self._owned = frozenset(partitions)
        self._metrics.partitions_assigned.set(len(partitions))
        self._reshare()
        logger.info(
            "partitions assigned",
            extra={
                "partitions": sorted(f"{p.topic}/{p.partition}" for p in partitions),
                "share_of_partitions": f"{self._share.assigned}/{self._share.total}",
            },
        )

    async def hand_over(self, partitions: set[Partition]) -> None:
        """Partitions are being revoked: let their events finish (up to the grace period),
        commit what finished, and cancel the rest for the next owner to read again; no result
        of these partitions is published after this returns."""
        if not partitions:
            return
        self._assignment += 1
        self._owned -= partitions
        try:
            finished = await self._dispatcher.drain(self._rebalance_grace, partitions)
            await _survive("offset commit on revocation", lambda: self.commit(only=partitions))
        finally:
            self._tracker.forget(partitions)
            for partition in partitions:
                self._group_committed.pop(partition, None)
                # Another consumer reports these now; a stale series would double the lag.
                with contextlib.suppress(KeyError):
                    self._metrics.consumer_lag.remove(partition.topic, str(partition.partition))
            self._metrics.partitions_assigned.set(len(self._owned))
            self._reshare()
        logger.info(
            "partitions handed over",
            extra={
                "partitions": sorted(f"{p.topic}/{p.partition}" for p in partitions),
                "all_in_flight_finished": finished,
            },
        )

    def _reshare(self) -> None:
        """This replica's share of the upstream budgets: its share of the input partitions."""
        total = self._share.total
        consumer = self._consumer
        for topic in {partition.topic for partition in self._owned}:
            known = consumer.partitions_for_topic(topic) if consumer is not None else None
            if known:
                total = len(known)
            else:
                # The group's leader assigned from this topic's metadata, so this cannot
                # happen short of a bug; the smallest share is the one that stays in budget.
                total = _UNKNOWN_PARTITION_COUNT
                logger.warning(
                    "input partitions unknown; using the smallest budget share",
                    extra={"topic": topic},
                )
        self._share.update(len(self._owned), max(total, len(self._owned)))


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


class _HandOverOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Runs before the group rebalances, while the partitions are still ours to commit.
        await self._intake.hand_over({Partition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._intake.assigned({Partition(tp.topic, tp.partition) for tp in assigned})
