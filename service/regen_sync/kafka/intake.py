"""Reading the input topic: admit each record and hand it to the dispatcher, and hand
partitions over cleanly when the consumer group rebalances.

A record is admitted (its offset started in ``Offsets``) only while its partition is still
ours under the assignment it was read in. A revoked partition gets the grace period for its
events, what finished of it is committed, and what is left of it is cancelled, so that no
result of it is published after it went to its next owner. Committing itself is the
``Committer``'s.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from faststream.kafka.message import KafkaMessage
from faststream.message import StreamMessage

from regen_sync.kafka.committer import Committer, ConsumerSource
from regen_sync.kafka.dispatcher import Dispatcher
from regen_sync.kafka.offsets import Offsets, Partition
from regen_sync.observability import Metrics
from regen_sync.processing import InputRecord, PendingEvent
from regen_sync.resilience import GroupShare

logger = logging.getLogger(__name__)

_UNKNOWN_PARTITION_COUNT = 1_000_000
"""Stands in for a partition count the metadata lacks: it makes the share the minimum, 1."""


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
        read: Callable[[InputRecord], PendingEvent],
        dispatcher: Dispatcher[PendingEvent],
        offsets: Offsets,
        committer: Committer,
        consumer: ConsumerSource,
        metrics: Metrics,
        share: GroupShare,
        *,
        rebalance_grace_seconds: float,
    ) -> None:
        self._read = read
        self._dispatcher = dispatcher
        self._offsets = offsets
        self._committer = committer
        self._consumer = consumer
        self._metrics = metrics
        self._share = share
        self._rebalance_grace = rebalance_grace_seconds

    async def on_records(self, message: KafkaMessage) -> None:
        """The subscriber's handler, for one poll's records. Returns once every record is
        admitted, not finished; admission waits while the record's lane is full.

        After a revocation, the rest of the poll belongs to the next owner (this process too,
        if the partition comes back: it then reads from the committed offset)."""
        polled = message.raw_message
        assert isinstance(polled, tuple), "the input subscriber is a batch subscriber"
        assignment = self._offsets.assignment
        for raw in polled:
            partition = Partition(raw.topic, raw.partition)
            if not self._offsets.still_ours(partition, assignment):
                return
            record = InputRecord(
                topic=raw.topic,
                partition=raw.partition,
                offset=raw.offset,
                key=raw.key,
                value=raw.value,
                headers=tuple(raw.headers or ()),
            )
            pending = self._read(record)
            await self._dispatcher.submit(
                pending,
                key=pending.ordering_key,
                lane=pending.lane,
                admit=functools.partial(self._offsets.admit, partition, record.offset, assignment),
            )

    async def stop(self, grace_seconds: float) -> None:
        """Stop reading and give in-flight events the grace period; what is left then is
        cancelled, to be read again. The committer's final commit comes after this.

        The poll being handled is not admitted any further: the subscriber still runs until
        the broker stops, and each event finishing makes room for the poll's next record,
        which would start a call (and a result) after the drain, as the clients close."""
        self._offsets.revoked(set(self._offsets.owned))
        consumer = self._consumer()
        if consumer is not None:
            consumer.pause(*consumer.assignment())
        finished = await self._dispatcher.drain(grace_seconds)
        logger.info(
            "stopped consuming",
            extra={"all_in_flight_finished": finished, "grace_seconds": grace_seconds},
        )

    def rebalance_listener(self) -> ConsumerRebalanceListener:
        return _HandOverOnRevoke(self)

    def assigned(self, partitions: set[Partition]) -> None:
        self._offsets.assigned(partitions)
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
        self._offsets.revoked(partitions)
        try:
            finished = await self._dispatcher.drain(self._rebalance_grace, partitions)
            await self._committer.commit(only=partitions)
        finally:
            self._offsets.forget(partitions)
            self._committer.forget(partitions)
            self._metrics.partitions_assigned.set(len(self._offsets.owned))
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
        owned = self._offsets.owned
        total = self._share.total
        consumer = self._consumer()
        for topic in {partition.topic for partition in owned}:
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
        self._share.update(len(owned), max(total, len(owned)))


class _HandOverOnRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Runs before the group rebalances, while the partitions are still ours to commit.
        await self._intake.hand_over({Partition(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._intake.assigned({Partition(tp.topic, tp.partition) for tp in assigned})
