"""``regen-sync send``: publish an input event for a smoke test, and optionally await its result.

The event comes from flags or a file and is validated by the service's own parser before it
is sent; ``--allow-invalid`` sends a refused one anyway, to exercise the dead-letter path.
It is keyed by its business object, as producers are asked to, so copies of one event run
one after another like real events for one object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from service.config import ConfigurationError
from service.domain import REGENERATION_SUCCEEDED, InvalidEvent, parse_event, plan
from service.kafka.publishing import CLOUDEVENTS_JSON
from service.operator.event_flags import data_fields, event_from_arguments, flag_name
from service.operator.metadata import TopicInfo, connection_options, describe_topics, kafka_client
from service.operator.output import Progress, describe_error, format_duration
from service.operator.settings import KafkaClientSettings, load_kafka_client_settings

_BATCH_SIZE = 500
_HEADERS = [("content-type", CLOUDEVENTS_JSON.encode())]
_MAX_IDS_LISTED = 10


class SendRefused(Exception):
    """Arguments or an event the command refuses before connecting to anything (exit 2)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    event_id: str | None
    key: bytes | None
    value: bytes


def send_command(arguments: argparse.Namespace) -> int:
    """0 when sent (and, with --wait, succeeded); 1 when not delivered, failed or no result
    in time; 2 for invalid configuration, arguments or event."""
    try:
        settings = load_kafka_client_settings()
        events = prepare(arguments, max_event_bytes=settings.processing.max_event_bytes)
    except ConfigurationError as error:
        print(f"regen-sync send: {error}", file=sys.stderr)
        return 2
    except SendRefused as refusal:
        print(f"regen-sync send: {refusal}", file=sys.stderr)
        return 2
    # Failures are reported once, below; aiokafka would log them again with tracebacks.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(
            _send(settings, events, arguments.count, wait=arguments.wait, seconds=arguments.timeout)
        )
    except (KafkaError, OSError, TimeoutError) as error:
        print(f"regen-sync send: Kafka: {describe_error(error)}", file=sys.stderr)
        return 1


def prepare(arguments: argparse.Namespace, *, max_event_bytes: int) -> Iterator[Outgoing]:
    """The records to send, after refusing contradictory arguments and invalid events."""
    _check_usage(arguments)
    raw = (
        _read(arguments.file)
        if arguments.file
        else json.dumps(event_from_arguments(arguments)).encode()
    )
    parsed = parse_event(raw, max_bytes=max_event_bytes)
    if isinstance(parsed, InvalidEvent):
        if not arguments.allow_invalid:
            raise SendRefused(
                "invalid event (--allow-invalid sends it anyway, to test the dead-letter path):"
                + "".join(f"\n  {problem}" for problem in parsed.problems)
            )
        key = None
    else:
        key = plan(parsed).object_key.encode()
    # Copies get fresh ids when the event is a JSON object; a single event keeps its own.
    has_ids = _event_id(raw) if arguments.count == 1 else _json_object(raw)
    if arguments.wait and has_ids is None:
        raise SendRefused("--wait matches results by event id, and this event has none")
    return copies(raw, arguments.count, key)


def copies(raw: bytes, count: int, key: bytes | None) -> Iterator[Outgoing]:
    """One event as given, or ``count`` copies each with a fresh id."""
    if count == 1:
        yield Outgoing(_event_id(raw), key, raw)
        return
    document = _json_object(raw)
    for _ in range(count):
        if document is None:
            # Not a JSON object (only with --allow-invalid): there is no id to refresh.
            yield Outgoing(None, key, raw)
            continue
        event_id = str(uuid.uuid4())
        yield Outgoing(event_id, key, json.dumps({**document, "id": event_id}).encode())


def _check_usage(arguments: argparse.Namespace) -> None:
    flags = [
        flag
        for flag, name in [("--type", "type"), ("--id", "id"), ("--source", "source")]
        + [(flag_name(name), name) for name in data_fields()]
        if getattr(arguments, name) is not None
    ]
    if arguments.file and flags:
        raise SendRefused(f"--file holds the whole event; drop {', '.join(flags)}")
    if not arguments.file and arguments.type is None:
        raise SendRefused("give --type with its data flags, or --file")
    if arguments.id is not None and arguments.count > 1:
        raise SendRefused("--id names one event; --count sends copies with fresh ids")


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise SendRefused(f"cannot read {path}: {error.strerror}") from None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _event_id(raw: bytes) -> str | None:
    document = _json_object(raw)
    event_id = document.get("id") if document is not None else None
    return event_id if isinstance(event_id, str) and event_id else None


# --- Kafka ---------------------------------------------------------------------------------------


async def _send(
    settings: KafkaClientSettings,
    events: Iterable[Outgoing],
    count: int,
    *,
    wait: bool,
    seconds: float,
) -> int:
    topics = settings.topics
    needed = [topics.input, *([topics.succeeded, topics.failed] if wait else [])]
    async with asyncio.timeout(seconds), kafka_client(settings.kafka, seconds) as client:
        described = await describe_topics(client, needed)
    unusable = [topic for topic in described.values() if not topic.exists]
    if unusable:
        for topic in unusable:
            said = "does not exist" if topic.missing else f"is not usable: {topic.error}"
            print(f"regen-sync send: topic {topic.name} {said}", file=sys.stderr)
        return 1
    watcher = (
        await ResultWatcher.start(
            settings, [described[topics.succeeded], described[topics.failed]], seconds
        )
        if wait
        else None
    )
    try:
        sent = await _publish(settings, events, count, seconds)
        if watcher is None:
            return 0
        return await watcher.report(sent, seconds)
    finally:
        if watcher is not None:
            await watcher.stop()


async def _publish(
    settings: KafkaClientSettings, events: Iterable[Outgoing], count: int, seconds: float
) -> dict[str, float]:
    """Sends every event and prints where each landed; returns when each id was acknowledged."""
    topic = settings.topics.input
    producer = AIOKafkaProducer(
        **connection_options(settings.kafka, seconds),
        acks="all",
        enable_idempotence=settings.kafka.enable_idempotence,
    )
    progress = Progress("sent", count)
    sent: dict[str, float] = {}
    done = 0
    try:
        async with asyncio.timeout(seconds):
            await producer.start()
        for batch in _batches(events, _BATCH_SIZE):
            futures = [
                await producer.send(topic, value=event.value, key=event.key, headers=_HEADERS)
                for event in batch
            ]
            for event, record in zip(batch, await asyncio.gather(*futures), strict=True):
                print(
                    f"sent {event.event_id or '(no id)'} to {topic} "
                    f"partition {record.partition} offset {record.offset}",
                    flush=True,
                )
                if event.event_id is not None:
                    sent[event.event_id] = time.monotonic()
            done += len(batch)
            progress.update(done)
    finally:
        await producer.stop()
    progress.finish(done)
    return sent


def _batches(events: Iterable[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    iterator = iter(events)
    while batch := list(islice(iterator, size)):
        yield batch


# --- results -------------------------------------------------------------------------------------


class ResultWatcher:
    """Reads the result topics from their end as it was before sending, without a consumer
    group (nothing to join, nothing committed), so it sees exactly the results that follow."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer

    @classmethod
    async def start(
        cls, settings: KafkaClientSettings, topics: list[TopicInfo], request_seconds: float
    ) -> ResultWatcher:
        consumer = AIOKafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            **connection_options(settings.kafka, request_seconds),
        )
        await consumer.start()
        partitions = [TopicPartition(t.name, number) for t in topics for number in t.partitions]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:
            # Fix the end positions now: a result published before this resolves would be
            # skipped if resolving were left to the first fetch.
            await consumer.position(partition)
        return cls(consumer)

    async def stop(self) -> None:
        await self._consumer.stop()

    async def report(self, sent: dict[str, float], seconds: float) -> int:
        """Prints each event's result as it arrives; 0 when every one succeeded."""
        pending = set(sent)
        outcomes = {"succeeded": 0, "failed": 0}
        progress = Progress("results", len(sent))
        deadline = time.monotonic() + seconds
        while pending and (left := deadline - time.monotonic()) > 0:
            batches = await self._consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                for record in records:
                    result = _json_object(record.value or b"")
                    source_id = _source_event_id(result)
                    if result is None or source_id not in pending:
                        continue
                    pending.discard(source_id)
                    succeeded = result.get("type") == REGENERATION_SUCCEEDED
                    outcomes["succeeded" if succeeded else "failed"] += 1
                    elapsed = time.monotonic() - sent[source_id]
                    print(describe_result(result, elapsed, full=len(sent) == 1), flush=True)
            progress.update(len(sent) - len(pending))
        progress.finish(len(sent) - len(pending))
        if len(sent) > 1:
            print(
                f"results: {outcomes['succeeded']} succeeded, {outcomes['failed']} failed, "
                f"{len(pending)} without a result within {seconds:g} s"
            )
        if pending:
            listed = ", ".join(sorted(pending)[:_MAX_IDS_LISTED])
            unlisted = len(pending) - _MAX_IDS_LISTED
            more = f" and {unlisted} more" if unlisted > 0 else ""
            print(
                f"regen-sync send: no result within {seconds:g} s for {listed}{more}",
                file=sys.stderr,
            )
        return 0 if outcomes["succeeded"] == len(sent) else 1


def _source_event_id(result: dict[str, Any] | None) -> str | None:
    data = result.get("data") if result is not None else None
    source_id = data.get("sourceEventId") if isinstance(data, dict) else None
    return source_id if isinstance(source_id, str) else None


def describe_result(result: dict[str, Any], elapsed: float, *, full: bool) -> str:
    """One line per result; with ``full``, the whole result event follows it."""
    data = result.get("data")
    data = data if isinstance(data, dict) else {}
    line = f"{result.get('type')} for {data.get('sourceEventId')} after {format_duration(elapsed)}"
    if result.get("type") != REGENERATION_SUCCEEDED:
        line += f": {data.get('reason')}: {data.get('message')}"
    if full:
        line += "\n" + json.dumps(result, indent=2)
    return line
