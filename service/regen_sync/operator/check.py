"""``regen-sync check``: everything the service needs, tried once, one line per check.

Each check is bounded by the same timeout, so the command never hangs; the Kafka checks and
the two upstream checks run concurrently, so the whole run takes about the slowest of them.
Nothing is changed anywhere: topics are described without auto-creation, Zuora is asked for
a token only, and SoftwareOne gets a read-only request.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import urlsplit

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient

from regen_sync.config import (
    ConfigurationError,
    Settings,
    SoftwareOneSettings,
    ZuoraSettings,
    load_settings,
)
from regen_sync.observability import Metrics, Tracing
from regen_sync.operator.entry import kafka_secrets, quiet_aiokafka
from regen_sync.operator.metadata import (
    TopicInfo,
    connection_options,
    describe_cluster,
    describe_topics,
)
from regen_sync.operator.output import CheckResult, Redactor, Status, describe_error
from regen_sync.upstream import TokenUnavailable, ZuoraTokens, upstream_http_client
from regen_sync.upstream.http import error_details

# The Marketplace API's journal collection: a GET needs the same token as the regenerate
# POST, and reading one journal changes nothing (the regenerate call is the only other one
# regen-sync knows, and every POST to it regenerates a journal).
SOFTWAREONE_PROBE_PATH = "/public/v1/billing/journals"

CONFIGURATION = "configuration"
KAFKA_BROKER = "Kafka broker"
CONSUMER_GROUP = "consumer group"
ZUORA_CHECK = "Zuora token"
SOFTWAREONE_CHECK = "SoftwareOne token"
_AUTH_STATUSES = frozenset({400, 401, 403})
T = TypeVar("T")


class CheckFailed(Exception):
    """A check's answer was wrong; the message says how, and never holds a secret."""


def check_command(arguments: argparse.Namespace) -> int:
    """0 when every check passes, 1 when one fails, 2 when the configuration is invalid."""
    try:
        settings = load_settings()
    except ConfigurationError as error:
        print(CheckResult(CONFIGURATION, Status.FAIL, "; ".join(error.problems)).line())
        return 2
    redact = Redactor(secrets_of(settings))

    def emit(result: CheckResult) -> None:
        print(redact(result.line()), flush=True)

    quiet_aiokafka()
    emit(CheckResult(CONFIGURATION, Status.OK, configuration_summary(settings)))
    passed = asyncio.run(run_checks(settings, arguments.timeout, emit))
    return 0 if passed else 1


def secrets_of(settings: Settings) -> list[str | None]:
    return [
        settings.zuora.client_secret.get_secret_value(),
        settings.softwareone.api_token.get_secret_value(),
        *kafka_secrets(settings.kafka),
    ]


def configuration_summary(settings: Settings) -> str:
    """What the service will connect to, and as whom; never a secret."""
    kafka = settings.kafka
    security: str = kafka.security_protocol
    if kafka.uses_sasl:
        security += f" {kafka.sasl_mechanism} as {kafka.sasl_username}"
    if kafka.ssl_certfile:
        security += f", client certificate {kafka.ssl_certfile}"
    return (
        f"Kafka {','.join(kafka.bootstrap_server_list)} ({security}), group {kafka.group_id}; "
        f"Zuora {settings.zuora.base_url} as client {settings.zuora.client_id}; "
        f"SoftwareOne {settings.softwareone.base_url}"
    )


async def run_checks(
    settings: Settings, check_seconds: float, emit: Callable[[CheckResult], None]
) -> bool:
    """Emits each result in a fixed order as soon as it and those before it are known."""
    upstream_checks = [
        asyncio.create_task(_timed(ZUORA_CHECK, check_seconds, _zuora_token(settings.zuora))),
        asyncio.create_task(
            _timed(SOFTWAREONE_CHECK, check_seconds, _softwareone_token(settings.softwareone))
        ),
    ]
    passed = True
    async for result in _kafka_checks(settings, check_seconds):
        emit(result)
        passed &= result.status is Status.OK
    for check in upstream_checks:
        result = await check
        emit(result)
        passed &= result.status is Status.OK
    return passed


@dataclass(frozen=True, slots=True)
class _Attempt(Generic[T]):
    value: T | None
    failure: str | None
    seconds: float


async def _attempt(check_seconds: float, probe: Awaitable[T]) -> _Attempt[T]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(check_seconds):
            value = await probe
    except CheckFailed as failure:
        return _Attempt(None, str(failure), time.perf_counter() - started)
    except TimeoutError:
        return _Attempt(
            None, f"no answer within {check_seconds:g} s", time.perf_counter() - started
        )
    except Exception as error:  # any failure is the check's result, not a crash
        return _Attempt(None, describe_error(error), time.perf_counter() - started)
    return _Attempt(value, None, time.perf_counter() - started)


async def _timed(name: str, check_seconds: float, probe: Awaitable[str]) -> CheckResult:
    attempt = await _attempt(check_seconds, probe)
    if attempt.failure is not None:
        return CheckResult(name, Status.FAIL, attempt.failure, attempt.seconds)
    return CheckResult(name, Status.OK, attempt.value or "", attempt.seconds)


# --- Kafka ---------------------------------------------------------------------------------------


async def _kafka_checks(settings: Settings, check_seconds: float) -> AsyncIterator[CheckResult]:
    topics = settings.topics
    roles = {
        "topic input": topics.input,
        "topic succeeded": topics.succeeded,
        "topic failed": topics.failed,
        "topic dead-letter": topics.dead_letter,
    }
    client = AIOKafkaClient(**connection_options(settings.kafka, check_seconds))
    try:
        broker = await _timed(KAFKA_BROKER, check_seconds, _broker(client))
        yield broker
        if broker.status is not Status.OK:
            for name in [*roles, CONSUMER_GROUP]:
                yield CheckResult(name, Status.SKIP, "the broker is unreachable")
            return
        lookup = await _attempt(check_seconds, describe_topics(client, list(roles.values())))
        described = lookup.value or {}
        for name, topic in roles.items():
            yield (
                _topic_result(name, described[topic], lookup.seconds)
                if lookup.failure is None
                else CheckResult(name, Status.FAIL, lookup.failure, lookup.seconds)
            )
    finally:
        await client.close()
    input_topic = described.get(topics.input)
    if input_topic is not None and input_topic.exists:
        yield await _timed(
            CONSUMER_GROUP, check_seconds, _consumer_group(settings, input_topic, check_seconds)
        )
    else:
        yield CheckResult(CONSUMER_GROUP, Status.SKIP, "the input topic is not available")


async def _broker(client: AIOKafkaClient) -> str:
    await client.bootstrap()
    cluster = await describe_cluster(client)
    return (
        f"{len(cluster.brokers)} broker(s) {', '.join(cluster.brokers)}, "
        f"cluster {cluster.cluster_id}, controller {cluster.controller_id}"
    )


def _topic_result(name: str, topic: TopicInfo, seconds: float | None) -> CheckResult:
    if topic.missing:
        return CheckResult(name, Status.FAIL, f"{topic.name} does not exist", seconds)
    if topic.error is not None:
        return CheckResult(name, Status.FAIL, f"{topic.name}: {topic.error}", seconds)
    count = len(topic.partitions)
    if topic.leaderless:
        detail = f"{topic.name}: {topic.leaderless} of {count} partitions have no leader"
        return CheckResult(name, Status.FAIL, detail, seconds)
    return CheckResult(name, Status.OK, f"{topic.name}, {count} partitions", seconds)


async def _consumer_group(settings: Settings, topic: TopicInfo, check_seconds: float) -> str:
    """Committed offsets and lag of the service's group, read without joining it."""
    kafka = settings.kafka
    consumer = AIOKafkaConsumer(
        group_id=kafka.group_id,
        enable_auto_commit=False,
        **connection_options(kafka, check_seconds),
    )
    partitions = [TopicPartition(topic.name, number) for number in topic.partitions]
    await consumer.start()
    try:
        committed = [await consumer.committed(partition) for partition in partitions]
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    # Where the group starts on a partition it never committed on.
    unset = starts if kafka.auto_offset_reset == "earliest" else ends
    lag = sum(
        max(0, ends[partition] - (unset[partition] if offset is None else offset))
        for partition, offset in zip(partitions, committed, strict=True)
    )
    with_offsets = sum(offset is not None for offset in committed)
    return (
        f"{kafka.group_id} has offsets on {with_offsets}/{len(partitions)} partitions of "
        f"{topic.name}, lag {lag}"
    )


# --- upstreams ---------------------------------------------------------------------------------


def _http_client(settings: ZuoraSettings | SoftwareOneSettings) -> httpx.AsyncClient:
    # The service's own client (transport, TLS, proxy), so the check sees what the service sees.
    return upstream_http_client(settings, Tracing.disabled(), user_agent="regen-sync check")


async def _zuora_token(settings: ZuoraSettings) -> str:
    """The service's own token request, with the configured client credentials."""
    async with _http_client(settings) as http:
        try:
            await ZuoraTokens(settings, http, Metrics()).bearer()
        except TokenUnavailable as error:
            hint = (
                "; the client credentials were refused: check REGEN_ZUORA__CLIENT_ID and "
                "REGEN_ZUORA__CLIENT_SECRET"
                if error.http_status in _AUTH_STATUSES
                else ""
            )
            raise CheckFailed(f"{error}{hint}") from None
    return f"issued by {settings.base_url} to client {settings.client_id}"


async def _softwareone_token(settings: SoftwareOneSettings) -> str:
    """A read of at most one journal, authenticated like the regenerate call."""
    url = str(settings.base_url).rstrip("/") + SOFTWAREONE_PROBE_PATH
    async with _http_client(settings) as http:
        try:
            response = await http.get(
                url,
                params={"limit": "1"},
                headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"},
            )
        except httpx.TransportError as error:
            reason = describe_error(error)
            raise CheckFailed(f"could not reach {urlsplit(url).netloc}: {reason}") from None
    if response.status_code == 200:
        return f"accepted by {settings.base_url} (GET {SOFTWAREONE_PROBE_PATH}: HTTP 200)"
    problem = error_details(response)
    said = problem.get("detail") or problem.get("title") or problem.get("body") or ""
    answer = f"GET {SOFTWAREONE_PROBE_PATH} answered HTTP {response.status_code} {said}".strip()
    if response.status_code in _AUTH_STATUSES:
        raise CheckFailed(f"{answer}; the token was refused: check REGEN_SOFTWAREONE__API_TOKEN")
    raise CheckFailed(answer)
