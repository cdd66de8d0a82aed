"""Wiring: settings in, a runnable FastStream application out. The only module that knows
every part; errors in the assembly surface here, before anything connects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from importlib.metadata import version
from typing import Any

from aiokafka import AIOKafkaProducer
from faststream import AckPolicy
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.message import StreamMessage
from faststream.specification import AsyncAPI
from prometheus_client import make_asgi_app

from regen_sync.config import Settings
from regen_sync.domain import RegenerationFailed, RegenerationSucceeded, Upstream
from regen_sync.kafka import (
    Dispatcher,
    Intake,
    KafkaResultSink,
    OffsetTracker,
    ReliableDelivery,
    aiokafka_connection_options,
    kafka_security,
    parse_records_with_any_headers,
)
from regen_sync.observability import Metrics, Tracing
from regen_sync.processing import EventProcessor, PendingEvent
from regen_sync.regeneration import Regenerator
from regen_sync.resilience import GroupShare, UpstreamGate
from regen_sync.upstream import SoftwareOneClient, ZuoraClient, ZuoraTokens, upstream_http_client

APP_TITLE = "regen-sync"
CLOSE_SECONDS = 10.0
"""Time allowed after the shutdown grace period for the final commit and closing the clients.
Below the chart's margin (terminationGracePeriodSeconds = grace + 15 s), so the process ends
itself, with a log line, before Kubernetes kills it."""

logger = logging.getLogger(__name__)


def create_app(settings: Settings, metrics: Metrics | None = None) -> AsgiFastStream:
    metrics = metrics or Metrics()
    tracing = Tracing.from_settings(settings.tracing, version=version("regen-sync"))
    faststream_logger = logging.getLogger("regen_sync.faststream")
    broker = KafkaBroker(
        settings.kafka.bootstrap_server_list,
        # FastStream logs through the service's JSON logging; per-message lines only at DEBUG.
        logger=faststream_logger,
        log_level=logging.DEBUG,
        security=kafka_security(settings.kafka),
        client_id=settings.kafka.client_id,
        enable_idempotence=settings.kafka.enable_idempotence,
        acks="all",
        middlewares=[
            KafkaPrometheusMiddleware(
                registry=metrics.registry, app_name=APP_TITLE, metrics_prefix="regen_faststream"
            )
        ],
    )
    # Declared for the AsyncAPI document; results are sent with the service's producer.
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
    # Any record the broker accepted on the input, of whatever size (events above
    # max_event_bytes are invalid, but still dead-lettered), is fetched and dead-lettered whole;
    # never less than a valid event plus room for the dead letter's headers.
    max_request_bytes = max(
        settings.kafka.max_request_bytes, settings.processing.max_event_bytes + 16_384
    )
    producer = _StartedWithTheApp(
        aiokafka_connection_options(settings.kafka)
        | {
            "acks": "all",
            "enable_idempotence": settings.kafka.enable_idempotence,
            "max_request_size": max_request_bytes,
            "linger_ms": 5,
        }
    )
    sink = KafkaResultSink(
        producer,
        succeeded_topic=settings.topics.succeeded,
        failed_topic=settings.topics.failed,
        dead_letter_topic=settings.topics.dead_letter,
        max_request_bytes=max_request_bytes,
        metrics=metrics,
        tracing=tracing,
    )

    # The budgets are the consumer group's; the partition assignment decides this replica's part.
    share = GroupShare()
    zuora_http = upstream_http_client(settings.zuora, tracing)
    softwareone_http = upstream_http_client(settings.softwareone, tracing)
    zuora_tokens = ZuoraTokens(settings.zuora, zuora_http, metrics)
    regenerator = Regenerator(
        {
            Upstream.ZUORA: ZuoraClient(settings.zuora, zuora_http, zuora_tokens, metrics),
            Upstream.SOFTWAREONE: SoftwareOneClient(
                settings.softwareone, softwareone_http, metrics
            ),
        },
        {
            upstream: UpstreamGate(
                upstream,
                upstream_settings,
                settings.circuit,
                metrics,
                max_pause_seconds=settings.processing.max_retry_after_seconds,
                share=share,
                heavy_max_concurrency=heavy_max_concurrency,
            )
            for upstream, upstream_settings, heavy_max_concurrency in (
                (Upstream.ZUORA, settings.zuora, settings.zuora.heavy_max_concurrency),
                (Upstream.SOFTWAREONE, settings.softwareone, None),
            )
        },
        settings.processing,
        metrics,
        tracing,
    )
    processor = EventProcessor(
        regenerator,
        ReliableDelivery(sink, metrics),
        metrics,
        event_source=settings.event_source,
        max_event_bytes=settings.processing.max_event_bytes,
        max_handling_attempts=settings.processing.max_handling_attempts,
        tracing=tracing,
    )
    tracker = OffsetTracker()
    intake = Intake(
        processor,
        Dispatcher(
            tracker,
            metrics,
            max_in_flight=settings.processing.max_in_flight,
            handle=processor.complete,
            merge_key=_coalescing_key if settings.processing.coalesce else _never_merged,
        ),
        tracker,
        metrics,
        share,
        commit_interval_seconds=settings.processing.commit_interval_seconds,
        rebalance_grace_seconds=settings.processing.rebalance_grace_seconds,
    )
    subscriber = broker.subscriber(
        settings.topics.input,
        group_id=settings.kafka.group_id,
        group_instance_id=settings.kafka.group_instance_id,
        auto_offset_reset=settings.kafka.auto_offset_reset,
        ack_policy=AckPolicy.MANUAL,
        listener=intake.rebalance_listener(),
        # The handler parses the bytes itself (regen_sync.domain.parsing). FastStream's own JSON
        # decoding would run first and can raise on hostile input (RecursionError on deep
        # nesting), which would drop the record without an outcome.
        decoder=_undecoded,
        parser=parse_records_with_any_headers,
        # Fetch sizes must let through any record the broker accepted: aiokafka skips a record
        # larger than the partition's fetch size when a broker sends only part of it.
        max_partition_fetch_bytes=max_request_bytes,
        fetch_max_bytes=max(50 * 1024 * 1024, max_request_bytes),  # aiokafka's default: 50 MiB
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        # One handler call per poll, not per record: FastStream's per-call work (context,
        # dependency injection, middlewares) was a tenth of the CPU per event when per record.
        batch=True,
        max_records=settings.kafka.max_poll_records,
        batch_timeout_ms=settings.kafka.fetch_max_wait_ms,
        title="data fixed events",
        description="CloudEvents 1.0 (structured JSON): billing.document.fixed, booking.fixed, "
        "account.charges.fixed, journal.fixed.",
    )

    @subscriber
    async def on_data_fixed(records: KafkaMessage) -> None:
        await intake.on_records(records)

    intake.attach(subscriber)

    async def start_clients() -> None:
        await producer.start()

    async def after_start() -> None:
        intake.start_committing()

    async def stop_gracefully() -> None:
        _exit_if_still_stopping_after(settings.processing.shutdown_grace_seconds + CLOSE_SECONDS)
        # Every client is closed whatever fails before it; the exit stack closes in reverse.
        async with contextlib.AsyncExitStack() as closing:
            # Blocking, bounded by the exporter's timeout: the last spans are worth the wait.
            closing.push_async_callback(asyncio.to_thread, tracing.shutdown)
            closing.push_async_callback(softwareone_http.aclose)
            closing.push_async_callback(zuora_http.aclose)
            closing.push_async_callback(producer.stop)
            await intake.stop(settings.processing.shutdown_grace_seconds)

    @get(include_in_schema=False)
    async def live(scope: Any) -> AsgiResponse:
        # Liveness never touches Kafka: a broker outage must not get the pod restarted.
        return _json(200, {"status": "alive"})

    @get(include_in_schema=False)
    async def ready(scope: Any) -> AsgiResponse:
        consuming = subscriber.consumer is not None
        broker_reachable = await broker.ping(timeout=2.0)
        status = 200 if consuming and broker_reachable else 503
        return _json(status, {"consuming": consuming, "brokerReachable": broker_reachable})

    return AsgiFastStream(
        broker,
        asgi_routes=[
            ("/metrics", make_asgi_app(metrics.registry)),
            ("/health/live", live),
            ("/health/ready", ready),
        ],
        on_startup=[start_clients],
        after_startup=[after_start],
        on_shutdown=[stop_gracefully],
        logger=faststream_logger,
        specification=AsyncAPI(
            title=APP_TITLE,
            version=version("regen-sync"),
            description="Consumes 'data fixed' CloudEvents, calls the matching Zuora or "
            "SoftwareOne regeneration operation, publishes regeneration.succeeded or "
            "regeneration.failed (and dead-letters every failure).",
        ),
    )


class _StartedWithTheApp:
    """Interim, until the app's lifespan owns the producer: aiokafka binds a producer to the
    running loop, so it is built at start-up, not here."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> Any:
        assert self._producer is not None, "started with the app"
        return await self._producer.send_and_wait(
            topic, value, key, partition, timestamp_ms, headers
        )


def _exit_if_still_stopping_after(seconds: float) -> None:
    """With the broker away, aiokafka's clients wait out their request timeout (40 s) while
    closing. Nothing is lost by not waiting: results not acknowledged were not committed, and
    their events are read again. A timer thread, because the event loop may be the one stuck."""

    def exit_now() -> None:
        logger.warning(
            "shutdown still not finished; exiting without waiting for the Kafka clients to close",
            extra={"after_seconds": seconds},
        )
        logging.shutdown()
        os._exit(0)

    watchdog = threading.Timer(seconds, exit_now)
    watchdog.daemon = True
    watchdog.start()


async def _undecoded(message: StreamMessage[Any]) -> bytes:
    return message.body


def _coalescing_key(pending: PendingEvent) -> str | None:
    return pending.coalescing_key


def _never_merged(pending: PendingEvent) -> None:
    return None


def _json(status: int, body: dict[str, Any]) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status, headers={"content-type": "application/json"}
    )
