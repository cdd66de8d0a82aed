"""Plain aiokafka clients on the Tansu broker, for tests that drive Kafka without the service.

Tansu answers a JoinGroup only after about half the consumer's session timeout: QUICK_GROUP's
3 s session timeout joins in about 2 s instead of 5 s.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from devstack import TansuBroker

QUICK_GROUP: dict[str, Any] = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 1000}
DELIVERY_TIMEOUT_S = 15.0


@asynccontextmanager
async def producer(broker: TansuBroker) -> AsyncIterator[AIOKafkaProducer]:
    # Tansu rejects InitProducerId, so the idempotent producer cannot start.
    client = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, enable_idempotence=False)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@asynccontextmanager
async def group_consumer(
    broker: TansuBroker, topic: str, group: str, **settings: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(QUICK_GROUP | settings),
    )
    # With the topic given up front, start() returns only once the group has assigned it.
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def drain(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    received: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(DELIVERY_TIMEOUT_S):
        while len(received) < count:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                received.extend(records)
    return received


async def assert_nothing_delivered(consumer: AIOKafkaConsumer, wait_s: float = 1.5) -> None:
    batches = await consumer.getmany(timeout_ms=int(wait_s * 1000))
    assert not any(batches.values()), f"unexpected delivery: {batches}"


def positions(records: list[ConsumerRecord[bytes, bytes]]) -> list[tuple[int, int]]:
    return sorted((record.partition, record.offset) for record in records)
