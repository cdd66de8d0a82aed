"""Reading topics without a consumer group: offset ranges up to the end of each partition, and
whatever is published after a moment (``Tail``).

Every read "up to the end" or "from the end" goes through ``TansuEndOffsets``, the one place
that knows the local broker's end offsets are not to be trusted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, TopicPartition

from regen_sync.config import KafkaSettings
from regen_sync.operator.clients import groupless_consumer
from regen_sync.operator.metadata import TopicInfo
from regen_sync.operator.records import Record

POLL_SECONDS = 0.5


class ReadStalled(Exception):
    """The broker stopped returning records before the end offsets were reached."""


class ListedEndOffsets:
    """Each partition's end offset as it was given: where reading an offset range stops."""

    def __init__(self, ends: Mapping[TopicPartition, int]) -> None:
        self._ends: dict[TopicPartition, int] = dict(ends)

    def __getitem__(self, partition: TopicPartition) -> int:
        return self._ends[partition]

    def as_dict(self) -> dict[TopicPartition, int]:
        return dict(self._ends)

    def learn(self, consumer: AIOKafkaConsumer) -> None:
        """Given ends stay as they are."""


class TansuEndOffsets(ListedEndOffsets):
    """End offsets corrected by the high watermark of each partition's first fetch answer; it
    exists for Tansu, the local broker of the dev stack and the tests.

    Kafka answers ListOffsets (what ``end_offsets`` and ``seek_to_end`` ask) with the high
    watermark. Tansu answers with the last record batch's first offset + 1: reading up to that
    end would leave out the rest of the batch, and reading from it would take the rest of the
    batch for records published later. A fetch answer carries the true high watermark, so each
    end is moved up to it once the consumer has one for its partition. On Kafka the two are the
    same and nothing moves.
    """

    def __init__(self, listed: Mapping[TopicPartition, int]) -> None:
        super().__init__(listed)
        self._unconfirmed = set(listed)

    def learn(self, consumer: AIOKafkaConsumer) -> None:
        """Takes the high watermark of every partition a fetch has answered for."""
        for partition in list(self._unconfirmed):
            highwater = consumer.highwater(partition)
            if highwater is not None:
                self._unconfirmed.discard(partition)
                self._ends[partition] = max(self._ends[partition], highwater)

    async def confirm(self, consumer: AIOKafkaConsumer, seconds: float) -> None:
        """Fetches until every partition's end is confirmed. Only for reading from the end: the
        records fetched meanwhile are dropped (they are older than the ends)."""
        async with asyncio.timeout(seconds):
            while self._unconfirmed:
                await consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000))
                self.learn(consumer)


def read_to_the_end(
    consumer: AIOKafkaConsumer, ranges: Mapping[TopicPartition, range], seconds: float
) -> AsyncGenerator[list[Record]]:
    """Like ``read_ranges``, for ranges that stop at the end offsets listed at start: each is
    read to the true end (see TansuEndOffsets). Records published after start are left for a
    later run."""
    ends = TansuEndOffsets(
        {partition: offsets.stop for partition, offsets in ranges.items() if offsets}
    )
    return _read(consumer, ranges, ends, seconds)


def read_ranges(
    consumer: AIOKafkaConsumer, ranges: Mapping[TopicPartition, range], seconds: float
) -> AsyncGenerator[list[Record]]:
    """The records of each partition's offset range, batch by batch, until every range is read;
    raises ReadStalled when the broker returns nothing for ``seconds``."""
    ends = ListedEndOffsets(
        {partition: offsets.stop for partition, offsets in ranges.items() if offsets}
    )
    return _read(consumer, ranges, ends, seconds)


async def _read(
    consumer: AIOKafkaConsumer,
    ranges: Mapping[TopicPartition, range],
    ends: ListedEndOffsets,
    seconds: float,
) -> AsyncGenerator[list[Record]]:
    starts = {partition: offsets.start for partition, offsets in ranges.items() if offsets}
    pending = set(starts)
    # No await between assigning and seeking: the reset to the default position that
    # assigning starts must not land after the seek.
    consumer.assign(list(starts))
    for partition, start in starts.items():
        consumer.seek(partition, start)
    quiet_since = time.monotonic()
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=int(POLL_SECONDS * 1000))
        ends.learn(consumer)
        records = [
            record
            for partition, batch in batches.items()
            for record in batch
            if starts[partition] <= record.offset < ends[partition]
        ]
        for partition in sorted(pending):
            if await consumer.position(partition) >= ends[partition]:
                # Read to its end: anything after that belongs to a later run.
                consumer.pause(partition)
                pending.discard(partition)
        if records:
            yield records
        if batches:
            quiet_since = time.monotonic()
        elif pending and time.monotonic() - quiet_since > seconds:
            where = ", ".join(
                f"{partition.topic}/{partition.partition} before offset {ends[partition]}"
                for partition in sorted(pending)
            )
            raise ReadStalled(f"no records within {seconds:g} s; not read to the end: {where}")


class Tail:
    """The records published to some topics after it opened: a consumer without a consumer
    group, from the ends the topics had then (see TansuEndOffsets), so a command sees exactly
    what follows what it sends."""

    def __init__(self, consumer: AIOKafkaConsumer, floors: dict[TopicPartition, int]) -> None:
        self._consumer = consumer
        self._floors = floors

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: KafkaSettings, topics: Sequence[TopicInfo], request_seconds: float
    ) -> AsyncIterator[Tail]:
        async with groupless_consumer(
            settings, request_seconds, fetch_max_wait_ms=settings.fetch_max_wait_ms
        ) as consumer:
            partitions = [TopicPartition(t.name, n) for t in topics for n in t.partitions]
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            # Fixed now: a record published before this resolves would be skipped if resolving
            # were left to the first fetch.
            ends = TansuEndOffsets(
                {partition: await consumer.position(partition) for partition in partitions}
            )
            await ends.confirm(consumer, request_seconds)
            yield cls(consumer, ends.as_dict())

    async def poll(self, seconds: float) -> list[Record]:
        """What came within ``seconds`` (at most), oldest first per partition."""
        batches = await self._consumer.getmany(timeout_ms=int(seconds * 1000))
        return [
            record
            for partition, records in batches.items()
            for record in records
            if record.offset >= self._floors.get(partition, 0)
        ]
