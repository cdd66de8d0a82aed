"""Reading the input topic: hand each record to the dispatcher, commit what is finished.

Offsets are committed by this module only (the subscriber's ack policy is manual), at a
fixed interval, on partition revocation and at shutdown; always the position below which
every record has its result published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka.message import KafkaMessage
from faststream.kafka.subscriber.usecase import LogicSubscriber

from service.kafka.dispatcher import Dispatcher
from service.kafka.offsets import OffsetTracker, Partition
from service.observability import Metrics
from service.processing import EventProcessor, InputRecord, PendingEvent

logger = logging.getLogger(__name__)

COMMIT_TIMEOUT_SECONDS = 5.0
"""aiokafka's commit waits for the group coordinator however long the broker is away; a commit
that takes longer counts as failed, and its positions go with the next one."""


class Intake:
    def __init__(
        self,
        processor: EventProcessor,
        dispatcher: Dispatcher[PendingEvent],
        tracker: OffsetTracker,
        metrics: Metrics,
        *,
        commit_interval_seconds: float,
        rebalance_grace_seconds: float,
    ) -> None:
        self._processor = processor
        self._dispatcher = dispatcher
        self._tracker = tracker
        self._metrics = metrics
        self._commit_interval = commit_interval_seconds
        self._rebalance_grace = rebalance_grace_seconds
        self._subscriber: LogicSubscriber[Any] | None = None
        self._commit_loop: asyncio.Task[None] | None = None
        self._commit_lock = asyncio.Lock()

    def attach(self, subscriber: LogicSubscriber[Any]) -> None:
        self._subscriber = subscriber

    async def on_records(self, message: KafkaMessage) -> None:
        """The subscriber's handler, for one poll's records. Returns once every record is
        admitted, not finished; admission waits while the record's lane is full."""
        polled = message.raw_message
        assert isinstance(polled, tuple), "the input subscriber is a batch subscriber"
        for raw in polled:
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
                Partition(record.topic, record.partition),
                record.offset,
                pending,
                key=pending.ordering_key,
                lane=pending.lane,
            )

    def start_committing(self) -> None:
        self._commit_loop = asyncio.create_task(self._commit_periodically())

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval)
            await self.commit()
            await self._report_lag()

    async def _report_lag(self) -> None:
        """regen_consumer_lag per assigned partition: high watermark minus committed offset.

        Exported by the service itself so dashboards and autoscalers need no lag exporter;
        the high watermark is the one the last fetch reported."""
        consumer = self._subscriber.consumer if self._subscriber else None
        if consumer is None:
            return
        for tp in consumer.assignment():
            high_watermark = consumer.highwater(tp)
            if high_watermark is None:
                continue
            committed = self._tracker.committed_position(Partition(tp.topic, tp.partition))
            if committed is None:
                try:
                    committed = await consumer.committed(tp) or 0
                except KafkaError:
                    continue
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(0, high_watermark - committed)
            )

    async def commit(self, only: set[Partition] | None = None) -> None:
        consumer = self._subscriber.consumer if self._subscriber else None
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
        """Stop reading, give in-flight events the grace period, commit what finished."""
        consumer = self._subscriber.consumer if self._subscriber else None
        if consumer is not None:
            consumer.pause(*consumer.assignment())
        finished = await self._dispatcher.drain(grace_seconds)
        if self._commit_loop is not None:
            self._commit_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._commit_loop
        # When it fails, what it would have committed is read again by the next owner.
        await self.commit()
        logger.info(
            "stopped consuming",
            extra={"all_in_flight_finished": finished, "grace_seconds": grace_seconds},
        )

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _CommitOnRevoke(self)

    async def hand_over(self, partitions: set[Partition]) -> None:
        """Partitions are being revoked: let their events finish (up to the grace period),
        commit what finished, and drop the rest for the next owner to read again."""
        finished = await self._dispatcher.drain(self._rebalance_grace, partitions)
        await self.commit(only=partitions)
        self._tracker.forget(partitions)
        for partition in partitions:
            # Another consumer reports these now; a stale series would double the lag.
            with contextlib.suppress(KeyError):
                self._metrics.consumer_lag.remove(partition.topic, str(partition.partition))
        logger.info(
            "partitions handed over",
            extra={
                "partitions": sorted(f"{p.topic}/{p.partition}" for p in partitions),
                "all_in_flight_finished": finished,
            },
        )


class _CommitOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Runs before the group rebalances, while the partitions are still ours to commit.
        await self._intake.hand_over({Partition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info(
            "partitions assigned",
            extra={"partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)},
        )
