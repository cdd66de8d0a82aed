"""Wiring: settings in, a runnable FastStream application out. The only module that knows
every part; errors in the assembly surface here, before anything connects.

What runs, in FastStream's order (faststream/asgi/app.py, ``start_lifespan_context``):

1. ``_lifespan`` enters: the result producer and the HTTP clients are started; each start
   is paired with its stop on one exit stack, tracing's shutdown at the bottom.
2. The broker starts: the input subscriber joins the group and consumes.
3. ``after_startup``: the committer starts committing.
4. On SIGTERM, ``on_shutdown``: reading stops, in-flight events get the grace period, and the
   committer commits what finished; all while the consumer is still there to commit with.
5. The broker stops (the consumer leaves the group).
6. ``_lifespan`` exits: producer and HTTP clients close, then tracing flushes its last spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.kafka.subscriber.usecase import BatchSubscriber
from prometheus_client import make_asgi_app

from regen_sync.channels import (
    APP_TITLE,
    kafka_broker,
    max_request_bytes,
    subscribe_to_input,
)
from regen_sync.config import Settings
from regen_sync.domain import Upstream
from regen_sync.kafka import (
    Committer,
    Dispatcher,
    Intake,
    KafkaResultSink,
    Offsets,
    ReliableDelivery,
    aiokafka_connection_options,
)
from regen_sync.observability import Metrics, Tracing
from regen_sync.processing import EventProcessor, PendingEvent
from regen_sync.regeneration import Regenerator
from regen_sync.resilience import GroupShare, UpstreamGate
from regen_sync.upstream import SoftwareOneClient, ZuoraClient, ZuoraTokens, upstream_http_client

CLOSE_SECONDS = 10.0
"""Time allowed after the shutdown grace period for the final commit and closing the clients.
Below the chart's margin (terminationGracePeriodSeconds = grace + 15 s), so the process ends
itself, with a log line, before Kubernetes kills it."""

logger = logging.getLogger(__name__)


def create_app(settings: Settings, metrics: Metrics | None = None) -> AsgiFastStream:
    metrics = metrics or Metrics()
    tracing = Tracing.from_settings(settings.tracing, version=version("regen-sync"))
    broker = kafka_broker(
        settings,
        middlewares=[
            KafkaPrometheusMiddleware(
                registry=metrics.registry, app_name=APP_TITLE, metrics_prefix="regen_faststream"
            )
        ],
    )
    http_clients = {
        Upstream.ZUORA: upstream_http_client(settings.zuora, tracing),
        Upstream.SOFTWAREONE: upstream_http_client(settings.softwareone, tracing),
    }
    # The budgets are the consumer group's; the partition assignment decides this replica's part.
    share = GroupShare()
    # Results and dead letters: one producer, owned by the lifespan. Built here, so create_app
    # runs in the event loop the app is served in (aiokafka binds a client to its loop).
    producer = AIOKafkaProducer(**result_producer_options(settings))
    sink = KafkaResultSink(
        producer,
        succeeded_topic=settings.topics.succeeded,
        failed_topic=settings.topics.failed,
        dead_letter_topic=settings.topics.dead_letter,
        max_request_bytes=max_request_bytes(settings),
        metrics=metrics,
        tracing=tracing,
    )
    processor = EventProcessor(
        _regenerator(settings, http_clients, share, metrics, tracing),
        ReliableDelivery(sink, metrics),
        metrics,
        event_source=settings.event_source,
        max_event_bytes=settings.processing.max_event_bytes,
        max_handling_attempts=settings.processing.max_handling_attempts,
        tracing=tracing,
    )
    subscriber, intake, committer = _consume(broker, settings, processor, metrics, share)

    return AsgiFastStream(
        broker,
        asgi_routes=_routes(broker, subscriber, metrics),
        lifespan=_lifespan(tracing, http_clients, producer),
        after_startup=[committer.start],
        on_shutdown=[_stop_consuming(intake, committer, settings)],
        logger=logging.getLogger("regen_sync.faststream"),
    )


class _KafkaClient(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _lifespan(
    tracing: Tracing, http_clients: dict[Upstream, httpx.AsyncClient], producer: _KafkaClient
) -> Callable[..., contextlib.AbstractAsyncContextManager[None]]:
    """The clients' lifetime, around the broker's: started before the subscriber consumes,
    closed after the final commit (see the module's docstring for the order)."""

    @contextlib.asynccontextmanager
    async def lifespan(**_uvicorn_options: Any) -> AsyncIterator[None]:
        # Every client is closed whatever fails before it; the exit stack closes in reverse.
        async with contextlib.AsyncExitStack() as running:
            # Blocking, bounded by the exporter's timeout: the last spans are worth the wait.
            running.push_async_callback(asyncio.to_thread, tracing.shutdown)
            for client in http_clients.values():
                await running.enter_async_context(client)
            # Its stop first: a start that fails half-way leaves a client to close too.
            running.push_async_callback(producer.stop)
            await producer.start()
            yield

    return lifespan


def _stop_consuming(
    intake: Intake, committer: Committer, settings: Settings
) -> Callable[[], Awaitable[None]]:
    """The shutdown hook: runs while the consumer is still there to commit with."""

    async def stop_consuming() -> None:
        _exit_if_still_stopping_after(settings.processing.shutdown_grace_seconds + CLOSE_SECONDS)
        await intake.stop(settings.processing.shutdown_grace_seconds)
        await committer.stop()

    return stop_consuming


def result_producer_options(settings: Settings) -> dict[str, Any]:
    """The aiokafka producer of results and dead letters."""
    return aiokafka_connection_options(settings.kafka) | {
        "acks": "all",
        "enable_idempotence": settings.kafka.enable_idempotence,
        "max_request_size": max_request_bytes(settings),
        # A few milliseconds of batching: results of one poll go out in a few requests.
        "linger_ms": 5,
        # Room for a poll's results in one batch per partition: with aiokafka's 16 KiB a
        # burst filled the batch after about 25 results and each further send waited for it
        # to drain (5 % of the event loop in the profile).
        "max_batch_size": min(1024 * 1024, max_request_bytes(settings)),
    }


def _regenerator(
    settings: Settings,
    http_clients: dict[Upstream, httpx.AsyncClient],
    share: GroupShare,
    metrics: Metrics,
    tracing: Tracing,
) -> Regenerator:
    zuora_http = http_clients[Upstream.ZUORA]
    zuora_tokens = ZuoraTokens(settings.zuora, zuora_http, metrics)
    return Regenerator(
        {
            Upstream.ZUORA: ZuoraClient(settings.zuora, zuora_http, zuora_tokens, metrics),
            Upstream.SOFTWAREONE: SoftwareOneClient(
                settings.softwareone, http_clients[Upstream.SOFTWAREONE], metrics
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


def _consume(
    broker: KafkaBroker,
    settings: Settings,
    processor: EventProcessor,
    metrics: Metrics,
    share: GroupShare,
) -> tuple[BatchSubscriber, Intake, Committer]:
    """The input subscriber, the intake that admits its records, and the committer."""

    def consumer() -> AIOKafkaConsumer | None:
        # The subscriber is declared below, with the intake as its rebalance listener;
        # FastStream creates its consumer when the broker starts.
        return subscriber.consumer

    offsets = Offsets()
    committer = Committer(
        consumer,
        offsets,
        metrics,
        interval_seconds=settings.processing.commit_interval_seconds,
    )
    intake = Intake(
        processor.read,
        Dispatcher(
            offsets.finished,
            metrics,
            max_in_flight=settings.processing.max_in_flight,
            handle=processor.complete,
            merge_key=_coalescing_key if settings.processing.coalesce else _never_merged,
        ),
        offsets,
        committer,
        consumer,
        metrics,
        share,
        rebalance_grace_seconds=settings.processing.rebalance_grace_seconds,
    )

    async def on_data_fixed(records: KafkaMessage) -> None:
        await intake.on_records(records)

    subscriber = subscribe_to_input(
        broker, settings, on_data_fixed, listener=intake.rebalance_listener()
    )
    return subscriber, intake, committer


def _routes(
    broker: KafkaBroker, subscriber: BatchSubscriber, metrics: Metrics
) -> list[tuple[str, Any]]:
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

    return [
        ("/metrics", make_asgi_app(metrics.registry)),
        ("/health/live", live),
        ("/health/ready", ready),
    ]


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


def _coalescing_key(pending: PendingEvent) -> str | None:
    return pending.coalescing_key


def _never_merged(pending: PendingEvent) -> None:
    return None


def _json(status: int, body: dict[str, Any]) -> AsgiResponse:
    return AsgiResponse(
        json.dumps(body).encode(), status, headers={"content-type": "application/json"}
    )
