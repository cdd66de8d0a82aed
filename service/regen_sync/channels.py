"""The service's Kafka channels as FastStream declares them: the broker, the input subscriber
and the result publishers. The app consumes through these declarations, and the AsyncAPI
document describes them; both come from here, so the document is the service's own."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import version
from typing import Any

from aiokafka import ConsumerRebalanceListener
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from faststream.types import BrokerMiddleware

from regen_sync.config import Settings
from regen_sync.domain import RegenerationFailed, RegenerationSucceeded
from regen_sync.kafka import kafka_security, parse_records_with_any_headers

APP_TITLE = "regen-sync"
INPUT_CHANNEL = "data fixed events"
_DEAD_LETTER_HEADROOM_BYTES = 16_384
"""Room for the headers a dead letter adds to a valid event of the largest size."""

InputHandler = Callable[[KafkaMessage], Awaitable[None]]


def max_request_bytes(settings: Settings) -> int:
    """The largest record the service fetches and produces.

    Any record the broker accepted on the input, of whatever size (events above
    max_event_bytes are invalid, but still dead-lettered), is fetched and dead-lettered whole;
    never less than a valid event plus room for the dead letter's headers."""
    return max(
        settings.kafka.max_request_bytes,
        settings.processing.max_event_bytes + _DEAD_LETTER_HEADROOM_BYTES,
    )


def kafka_broker(
    settings: Settings, middlewares: Sequence[BrokerMiddleware[Any, Any]] = ()
) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka.bootstrap_server_list,
        # FastStream logs through the service's JSON logging; per-message lines only at DEBUG.
        logger=logging.getLogger("regen_sync.faststream"),
        log_level=logging.DEBUG,
        security=kafka_security(settings.kafka),
        client_id=settings.kafka.client_id,
        enable_idempotence=settings.kafka.enable_idempotence,
        acks="all",
        middlewares=middlewares,
    )


def subscribe_to_input(
    broker: KafkaBroker,
    settings: Settings,
    handle: InputHandler,
    listener: ConsumerRebalanceListener | None = None,
) -> BatchSubscriber:
    fetch_bytes = max_request_bytes(settings)
    subscriber = broker.subscriber(
        settings.topics.input,
        group_id=settings.kafka.group_id,
        group_instance_id=settings.kafka.group_instance_id,
        auto_offset_reset=settings.kafka.auto_offset_reset,
        # Offsets are committed by regen_sync.kafka.Committer.
        ack_policy=AckPolicy.MANUAL,
        listener=listener,
        # The handler parses the bytes itself (regen_sync.domain.parsing). FastStream's own JSON
        # decoding would run first and can raise on hostile input (RecursionError on deep
        # nesting), which would drop the record without an outcome.
        decoder=_undecoded,
        parser=parse_records_with_any_headers,
        # Fetch sizes must let through any record the broker accepted: aiokafka skips a record
        # larger than the partition's fetch size when a broker sends only part of it.
        max_partition_fetch_bytes=fetch_bytes,
        fetch_max_bytes=max(50 * 1024 * 1024, fetch_bytes),  # aiokafka's default: 50 MiB
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        # One handler call per poll, not per record: FastStream's per-call work (context,
        # dependency injection, middlewares) was a tenth of the CPU per event when per record.
        batch=True,
        max_records=settings.kafka.max_poll_records,
        batch_timeout_ms=settings.kafka.fetch_max_wait_ms,
        title=INPUT_CHANNEL,
        description="CloudEvents 1.0 (structured JSON): billing.document.fixed, booking.fixed, "
        "account.charges.fixed, journal.fixed.",
    )
    subscriber(handle)
    return subscriber


def _declare_result_publishers(broker: KafkaBroker, settings: Settings) -> None:
    """The result topics (succeeded, failed), as the AsyncAPI document describes them; results
    are sent with the service's own producer (kafka.publishing), not through these."""
    broker.publisher(
        settings.topics.succeeded,
        title="regeneration.succeeded",
        description="One event per input event whose regeneration succeeded.",
        schema=RegenerationSucceeded,
    )
    broker.publisher(
        settings.topics.failed,
        title="regeneration.failed",
        description="One event per input event that did not succeed (also dead-lettered).",
        schema=RegenerationFailed,
    )


def asyncapi(settings: Settings) -> AsyncAPI:
    """The AsyncAPI description of the channels, declared without connecting anything."""
    broker = kafka_broker(settings)
    subscribe_to_input(broker, settings, _described_only)
    _declare_result_publishers(broker, settings)
    return AsyncAPI(
        broker,
        title=APP_TITLE,
        version=version("regen-sync"),
        description="Consumes 'data fixed' CloudEvents, calls the matching Zuora or "
        "SoftwareOne regeneration operation, publishes regeneration.succeeded or "
        "regeneration.failed (and dead-letters every failure).",
    )


async def _described_only(records: KafkaMessage) -> None:
    """The document's stand-in for the app's handler; the document never consumes."""


async def _undecoded(message: StreamMessage[Any]) -> bytes:
    return message.body
