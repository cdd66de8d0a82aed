"""The Kafka clients the operator commands open, started and stopped in one place: a consumer
without a consumer group, and a producer that sends records in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.structs import RecordMetadata

from regen_sync.config import KafkaSettings
from regen_sync.operator.metadata import connection_options


@asynccontextmanager
async def groupless_consumer(
    settings: KafkaSettings, request_seconds: float, **options: Any
) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer without a consumer group: the command assigns its partitions itself,
    joins nothing and commits nothing."""
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        # Records removed by retention while reading: go on from the oldest one left.
        auto_offset_reset="earliest",
        **options,
        **connection_options(settings, request_seconds),
    )
    async with _running(consumer, request_seconds):
        yield consumer


@asynccontextmanager
async def started_producer(
    settings: KafkaSettings, request_seconds: float
) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer whose records are acknowledged by every in-sync replica, idempotent
    as the service's own producer is configured."""
    producer = AIOKafkaProducer(
        **connection_options(settings, request_seconds),
        acks="all",
        enable_idempotence=settings.enable_idempotence,
    )
    async with _running(producer, request_seconds):
        yield producer


class _Client(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@asynccontextmanager
async def _running(client: _Client, request_seconds: float) -> AsyncIterator[None]:
    """Started within ``request_seconds``; stopped on the way out, also when starting failed."""
    try:
        async with asyncio.timeout(request_seconds):
            await client.start()
        yield
    finally:
        await client.stop()


@dataclass(frozen=True, slots=True)
class Message:
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


async def send_in_order(
    producer: AIOKafkaProducer, topic: str, messages: Sequence[Message]
) -> list[RecordMetadata | BaseException]:
    """Sends the messages one after another (the producer then keeps their order per partition)
    and awaits their acknowledgements: the outcome of each message sent, in order. A message the
    producer refuses before sending (e.g. larger than it may send) ends the list with that
    refusal: the ones after it are not sent."""
    futures = []
    refusal: list[BaseException] = []
    for message in messages:
        try:
            futures.append(
                await producer.send(
                    topic, value=message.value, key=message.key, headers=list(message.headers)
                )
            )
        except KafkaError as error:
            refusal.append(error)
            break
    outcomes: list[RecordMetadata | BaseException] = await asyncio.gather(
        *futures, return_exceptions=True
    )
    return [*outcomes, *refusal]
