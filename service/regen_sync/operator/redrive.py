"""``regen-sync redrive``: republish dead-lettered events to the input topic.

A dead letter holds the input record's value, key and headers unchanged, so republishing them
gives the service the same event again, with the same id, marked as re-driven once more
(``regen-redrive``): Zuora keeps every answer under its Idempotency-Key, so a re-drive must
start from keys of its own, or a fixed document would be answered the stored failure again.

The dead-letter topic is read from its beginning up to the end offsets taken at start, with
manually assigned partitions and no consumer group: the run ends, nothing is committed,
nothing is removed, and nothing it republishes (elsewhere) is read back.

Two passes keep memory proportional to the number of dead letters matching the filters, not
to their size: the first reads every dead letter's headers and event attributes and chooses; the
second reads only the offset ranges holding the chosen ones and sends those, in dead-letter
order within each partition, so events of one object (one key, one partition) keep their
order.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import enum
import json
import logging
import sys
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from regen_sync.config import ConfigurationError, KafkaSettings
from regen_sync.domain import FailureReason
from regen_sync.kafka.publishing import DLQ_FAILED_AT, DLQ_REASON, DLQ_TRUNCATED_FROM
from regen_sync.operator.metadata import (
    TopicInfo,
    connection_options,
    describe_topics,
    kafka_client,
)
from regen_sync.operator.output import Progress, Redactor, describe_error
from regen_sync.operator.rows import RowsRefused, report_event_ids
from regen_sync.operator.settings import KafkaClientSettings, load_kafka_client_settings
from regen_sync.processing import REDRIVE_HEADER, redrive_count

REDRIVEN_FROM = "regen-redriven-from"
"""Added to every republished record: the dead letter it came from, ``topic/partition/offset``."""
# regen-sync's own headers: the dead letter's error description, and the marks of an earlier
# re-drive. None of them belongs on an input record.
_OWN_HEADER_PREFIX = "regen-"
_POLL_SECONDS = 0.5
_ABSENT_LISTED = 20


class RedriveRefused(Exception):
    """Arguments the command refuses before connecting to anything (exit 2)."""


class NothingListed(Exception):
    """--csv lists no event to re-drive (exit 0, nothing read or sent)."""


class ReadStalled(Exception):
    """The broker stopped returning records before the end offsets were reached."""


class Record(Protocol):
    """What is read of a Kafka record (aiokafka's ConsumerRecord)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What selecting and listing a dead letter needs; its value stays on the topic."""

    topic: str
    partition: int
    offset: int
    reason: str | None
    """The ``regen-error-reason`` header; None on a record regen-sync did not write."""
    failed_at: dt.datetime
    event_id: str | None
    """The CloudEvent ``id``; None when the value is not a JSON object with one."""
    source: str | None = None
    event_type: str | None = None
    truncated: bool = False
    """The value was cut to fit the dead-letter topic: only the input topic holds it whole."""

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def identity(self) -> tuple[str, str, str]:
        """The same for every dead letter of one event (CloudEvents are unique by source and
        id); a record without an id is only itself."""
        if self.event_id is None:
            return ("record", self.origin, "")
        return ("event", self.source or "", self.event_id)

    @property
    def age(self) -> tuple[dt.datetime, int, int]:
        return (self.failed_at, self.partition, self.offset)

    def describe(self) -> str:
        return (
            f"{self.origin} id={self.event_id or '(none)'} type={self.event_type or '(none)'} "
            f"reason={self.reason or '(none)'} failed-at={self.failed_at.isoformat()}"
        )


def read_dead_letter(record: Record) -> DeadLetter:
    attributes = _event_attributes(record.value)
    return DeadLetter(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        reason=last_header(record.headers, DLQ_REASON),
        failed_at=_failed_at(record),
        event_id=attributes.get("id"),
        source=attributes.get("source"),
        event_type=attributes.get("type"),
        truncated=last_header(record.headers, DLQ_TRUNCATED_FROM) is not None,
    )


def last_header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    # The last one is what regen-sync added when the record last failed: earlier ones can
    # only come from a producer copying a dead letter's headers into a new record.
    values = [value for key, value in headers if key == name]
    return values[-1].decode("utf-8", "replace") if values else None


def _failed_at(record: Record) -> dt.datetime:
    """The ``regen-failed-at`` header, or the dead letter's own timestamp (written at the
    same moment) when the header is missing or unreadable."""
    text = last_header(record.headers, DLQ_FAILED_AT)
    if text is not None:
        try:
            return as_utc(dt.datetime.fromisoformat(text))
        except ValueError:
            pass
    return dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC)


def as_utc(moment: dt.datetime) -> dt.datetime:
    """A time without an offset is taken as UTC, the zone regen-sync writes in."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _event_attributes(value: bytes | None) -> dict[str, str]:
    """``id``, ``source`` and ``type`` where the value is a JSON object holding them as text;
    an invalid event's value may be anything."""
    try:
        document = json.loads(value) if value is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {
        name: text
        for name in ("id", "source", "type")
        if isinstance(text := document.get(name), str) and text
    }


def redriven_headers(headers: Sequence[tuple[str, bytes]], origin: str) -> list[tuple[str, bytes]]:
    """The input record's own headers, in their order, where it was re-driven from, and the
    re-drive count one above the record's own (so its Zuora Idempotency-Keys are new ones)."""
    kept = [(name, value) for name, value in headers if not name.startswith(_OWN_HEADER_PREFIX)]
    count = (redrive_count(headers) or 0) + 1
    return [*kept, (REDRIVEN_FROM, origin.encode()), (REDRIVE_HEADER, str(count).encode())]


# --- selection -----------------------------------------------------------------------------------


class Verdict(enum.Enum):
    MATCHING = enum.auto()
    NOT_MATCHING = enum.auto()
    HELD_BACK = enum.auto()
    """An invalid_event dead letter matching the other filters, without --reason invalid_event."""
    UNRECOGNISED = enum.auto()
    """A record matching the other filters without a regen-error-reason header."""
    TRUNCATED = enum.auto()
    """A matching dead letter whose value was cut: never re-driven."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters; a dead letter matches when it passes every one given."""

    reasons: frozenset[str] = frozenset()
    """Empty: every reason but invalid_event."""
    since: dt.datetime | None = None
    """Inclusive, compared with the failed-at time."""
    until: dt.datetime | None = None
    """Exclusive."""
    event_ids: frozenset[str] = frozenset()

    def verdict(self, dead_letter: DeadLetter) -> Verdict:
        if self.since is not None and dead_letter.failed_at < self.since:
            return Verdict.NOT_MATCHING
        if self.until is not None and dead_letter.failed_at >= self.until:
            return Verdict.NOT_MATCHING
        if self.event_ids and dead_letter.event_id not in self.event_ids:
            return Verdict.NOT_MATCHING
        if dead_letter.reason is None:
            return Verdict.UNRECOGNISED
        if self.reasons and dead_letter.reason not in self.reasons:
            return Verdict.NOT_MATCHING
        if dead_letter.truncated:
            return Verdict.TRUNCATED
        if self.reasons:
            return Verdict.MATCHING
        # Its value is what the parser refused; sent again unchanged it fails the same way,
        # unless the service has changed since (a new event type, a larger size limit).
        if dead_letter.reason == FailureReason.INVALID_EVENT:
            return Verdict.HELD_BACK
        return Verdict.MATCHING


@dataclass(frozen=True, slots=True)
class Choice:
    chosen: list[DeadLetter]
    """Oldest failure first."""
    superseded: int
    """Matching dead letters of an event that has a later one matching too."""
    over_limit: int


def choose(matching: Iterable[DeadLetter], limit: int | None) -> Choice:
    """The latest dead letter of each event (one event is dead-lettered again after a
    redelivery or an earlier re-drive, and needs sending once), oldest failure first, at most
    ``limit`` of them."""
    latest: dict[tuple[str, str, str], DeadLetter] = {}
    count = 0
    for dead_letter in matching:
        count += 1
        current = latest.get(dead_letter.identity)
        if current is None or current.age < dead_letter.age:
            latest[dead_letter.identity] = dead_letter
    ordered = sorted(latest.values(), key=lambda dead_letter: dead_letter.age)
    chosen = ordered if limit is None else ordered[:limit]
    return Choice(chosen, superseded=count - len(ordered), over_limit=len(ordered) - len(chosen))


# --- the command ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedriveOptions:
    selection: Selection
    target: str
    limit: int | None
    dry_run: bool
    seconds: float


def redrive_command(arguments: argparse.Namespace) -> int:
    """0 when every selected dead letter was sent (or listed, with --dry-run); 1 when reading
    or sending failed; 2 for invalid configuration or arguments."""
    try:
        settings = load_kafka_client_settings()
        options = _options(arguments, settings)
    except (ConfigurationError, RedriveRefused) as error:
        print(f"regen-sync redrive: {error}", file=sys.stderr)
        return 2
    except NothingListed as nothing:
        print(f"regen-sync redrive: {nothing}; nothing re-driven")
        return 0
    redact = Redactor(_secrets(settings.kafka))
    # Failures are reported once, below; aiokafka would log them again with tracebacks.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return asyncio.run(_redrive(settings, options))
    except (KafkaError, OSError, TimeoutError, ReadStalled) as error:
        print(redact(f"regen-sync redrive: Kafka: {describe_error(error)}"), file=sys.stderr)
        return 1


def _options(arguments: argparse.Namespace, settings: KafkaClientSettings) -> RedriveOptions:
    since = as_utc(arguments.since) if arguments.since is not None else None
    until = as_utc(arguments.until) if arguments.until is not None else None
    if since is not None and until is not None and since >= until:
        raise RedriveRefused("--since must be earlier than --until")
    topics = settings.topics
    target = arguments.to or topics.input
    if target in (topics.succeeded, topics.failed, topics.dead_letter):
        raise RedriveRefused(f"--to {target} is one of regen-sync's output topics")
    event_ids = frozenset(arguments.event_id or ())
    csv_path = getattr(arguments, "csv", None)
    if csv_path is not None:
        try:
            listed = report_event_ids(Path(csv_path))
        except RowsRefused as error:
            raise RedriveRefused(f"--csv: {error}") from None
        event_ids |= listed
        if not event_ids:
            # An empty id filter would select every dead letter.
            raise NothingListed(
                f"--csv {csv_path} lists no event id (with an outcome column: none failed)"
            )
    return RedriveOptions(
        Selection(
            reasons=frozenset(arguments.reason or ()),
            since=since,
            until=until,
            event_ids=event_ids,
        ),
        target=target,
        limit=arguments.limit,
        dry_run=arguments.dry_run,
        seconds=arguments.timeout,
    )


def _secrets(settings: KafkaSettings) -> list[str | None]:
    return [
        secret.get_secret_value() if secret else None
        for secret in (settings.sasl_password, settings.ssl_key_password)
    ]


async def _redrive(settings: KafkaClientSettings, options: RedriveOptions) -> int:
    dead_letter_topic = settings.topics.dead_letter
    seconds = options.seconds
    async with asyncio.timeout(seconds), kafka_client(settings.kafka, seconds) as client:
        described = await describe_topics(client, [dead_letter_topic, options.target])
    unusable = [topic for topic in described.values() if not topic.exists]
    for topic in unusable:
        said = "does not exist" if topic.missing else f"is not usable: {topic.error}"
        print(f"regen-sync redrive: topic {topic.name} {said}", file=sys.stderr)
    if unusable:
        return 1
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        # Records removed by retention while reading: go on from the oldest one left.
        auto_offset_reset="earliest",
        **connection_options(settings.kafka, seconds),
    )
    try:
        async with asyncio.timeout(seconds):
            await consumer.start()
        scan = await _scan(consumer, described[dead_letter_topic], options.selection, seconds)
        choice = choose(scan.matching, options.limit)
        if options.dry_run:
            for dead_letter in choice.chosen:
                print(f"would send {dead_letter.describe()}", flush=True)
            sending = Sending()
        else:
            sending = await _republish(settings, consumer, choice.chosen, options.target, seconds)
    finally:
        await consumer.stop()
    _summarise(scan, choice, sending, options)
    return 0 if sending.complete(choice) or options.dry_run else 1


# --- reading -------------------------------------------------------------------------------------


@dataclass
class Scan:
    scanned: int = 0
    matching: list[DeadLetter] = field(default_factory=list)
    verdicts: collections.Counter[Verdict] = field(default_factory=collections.Counter)


async def _scan(
    consumer: AIOKafkaConsumer, topic: TopicInfo, selection: Selection, seconds: float
) -> Scan:
    partitions = [TopicPartition(topic.name, number) for number in topic.partitions]
    starts = await consumer.beginning_offsets(partitions)
    # Fixed at start (see read_ranges): dead letters written while this runs wait for the next run.
    ends = await consumer.end_offsets(partitions)
    ranges = {partition: range(starts[partition], ends[partition]) for partition in partitions}
    scan = Scan()
    progress = Progress("scanned", sum(len(offsets) for offsets in ranges.values()))
    async for records in read_ranges(consumer, ranges, seconds, to_high_watermark=True):
        for record in records:
            dead_letter = read_dead_letter(record)
            verdict = selection.verdict(dead_letter)
            scan.verdicts[verdict] += 1
            if verdict is Verdict.MATCHING:
                scan.matching.append(dead_letter)
        scan.scanned += len(records)
        progress.update(scan.scanned)
    progress.finish(scan.scanned)
    return scan


async def read_ranges(
    consumer: AIOKafkaConsumer,
    ranges: dict[TopicPartition, range],
    seconds: float,
    *,
    to_high_watermark: bool = False,
) -> AsyncGenerator[list[Record]]:
    """The records of each partition's offset range, batch by batch, until every range is
    read; raises ReadStalled when the broker returns nothing for ``seconds``.

    With ``to_high_watermark``, the first fetch answer of each partition moves the end of
    its range to the high watermark that answer reports, when that is further. Kafka
    answers ListOffsets with that same high watermark; Tansu (the broker of the dev stack
    and the tests) answers with the last record batch's first offset + 1, which would leave
    out the rest of that batch.
    """
    wanted = {partition: offsets for partition, offsets in ranges.items() if offsets}
    pending = set(wanted)
    unfetched = set(wanted) if to_high_watermark else set()
    # No await between assigning and seeking: the reset to the default position that
    # assigning starts must not land after the seek.
    consumer.assign(list(wanted))
    for partition, offsets in wanted.items():
        consumer.seek(partition, offsets.start)
    quiet_since = time.monotonic()
    while pending:
        batches = await consumer.getmany(*pending, timeout_ms=int(_POLL_SECONDS * 1000))
        for partition in unfetched & batches.keys():
            unfetched.discard(partition)
            offsets = wanted[partition]
            highwater = consumer.highwater(partition) or offsets.stop
            wanted[partition] = range(offsets.start, max(offsets.stop, highwater))
        records = [
            record
            for partition, batch in batches.items()
            for record in batch
            if record.offset in wanted[partition]
        ]
        for partition in sorted(pending):
            if await consumer.position(partition) >= wanted[partition].stop:
                # Read to its end: anything after that belongs to a later run.
                consumer.pause(partition)
                pending.discard(partition)
        if records:
            yield records
        if batches:
            quiet_since = time.monotonic()
        elif pending and time.monotonic() - quiet_since > seconds:
            where = ", ".join(
                f"{partition.topic}/{partition.partition} before offset {wanted[partition].stop}"
                for partition in sorted(pending)
            )
            raise ReadStalled(f"no records within {seconds:g} s; not read to the end: {where}")


# --- sending -------------------------------------------------------------------------------------


@dataclass
class Sending:
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    """Dead letters that could not be sent, each with the error."""
    missing: list[str] = field(default_factory=list)
    """Chosen dead letters no longer on the topic when sending (removed by retention)."""

    def complete(self, choice: Choice) -> bool:
        return self.sent == len(choice.chosen)


async def _republish(
    settings: KafkaClientSettings,
    consumer: AIOKafkaConsumer,
    chosen: list[DeadLetter],
    target: str,
    seconds: float,
) -> Sending:
    """Reads the chosen dead letters again and republishes them; stops after the first batch
    with a record that could not be sent, so the lines printed say exactly what was sent."""
    waiting = {(dead_letter.partition, dead_letter.offset): dead_letter for dead_letter in chosen}
    offsets: dict[TopicPartition, list[int]] = collections.defaultdict(list)
    for dead_letter in chosen:
        offsets[TopicPartition(dead_letter.topic, dead_letter.partition)].append(dead_letter.offset)
    ranges = {partition: range(min(found), max(found) + 1) for partition, found in offsets.items()}
    producer = AIOKafkaProducer(
        **connection_options(settings.kafka, seconds),
        acks="all",
        enable_idempotence=settings.kafka.enable_idempotence,
    )
    sending = Sending()
    progress = Progress("sent", len(chosen))
    try:
        async with asyncio.timeout(seconds):
            await producer.start()
        async with contextlib.aclosing(read_ranges(consumer, ranges, seconds)) as batches:
            async for records in batches:
                batch = [
                    (record, waiting.pop((record.partition, record.offset)))
                    for record in records
                    if (record.partition, record.offset) in waiting
                ]
                await _send_batch(producer, target, batch, sending)
                progress.update(sending.sent)
                if sending.failed:
                    return sending
    finally:
        await producer.stop()
        progress.finish(sending.sent)
    sending.missing = [dead_letter.origin for dead_letter in waiting.values()]
    return sending


async def _send_batch(
    producer: AIOKafkaProducer,
    target: str,
    batch: list[tuple[Record, DeadLetter]],
    sending: Sending,
) -> None:
    futures = []
    for record, dead_letter in batch:
        # One at a time and in order: the producer then keeps their order per partition.
        try:
            futures.append(
                await producer.send(
                    target,
                    value=record.value,
                    key=record.key,
                    headers=redriven_headers(record.headers, dead_letter.origin),
                )
            )
        except KafkaError as error:
            # Refused before sending, e.g. a record larger than the producer may send.
            sending.failed.append(f"{dead_letter.origin}: {describe_error(error)}")
            break
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    for (_, dead_letter), outcome in zip(batch, outcomes, strict=False):
        if isinstance(outcome, BaseException):
            sending.failed.append(f"{dead_letter.origin}: {describe_error(outcome)}")
            continue
        sending.sent += 1
        print(
            f"sent {dead_letter.describe()} to {target}/{outcome.partition}/{outcome.offset}",
            flush=True,
        )


# --- output --------------------------------------------------------------------------------------


def _summarise(scan: Scan, choice: Choice, sending: Sending, options: RedriveOptions) -> None:
    sent = (
        f"0 (dry run: nothing sent to {options.target})"
        if options.dry_run
        else f"{sending.sent} to {options.target}"
    )
    print(f"scanned {scan.scanned}, selected {len(choice.chosen)}, sent {sent}")
    for note in summary_notes(scan.verdicts, choice, options):
        print(note)
    for failure in sending.failed:
        print(f"regen-sync redrive: not sent: {failure}", file=sys.stderr)
    unsent = len(choice.chosen) - sending.sent - len(sending.failed) - len(sending.missing)
    if sending.failed and unsent:
        print(
            f"regen-sync redrive: stopped at the failure; {unsent} more not sent",
            file=sys.stderr,
        )
    for origin in sending.missing:
        print(f"regen-sync redrive: {origin} is no longer on the topic", file=sys.stderr)


def summary_notes(
    verdicts: collections.Counter[Verdict], choice: Choice, options: RedriveOptions
) -> list[str]:
    """Why dead letters matching the filters were not selected, and which events asked for
    have none selected."""
    notes = []
    if held_back := verdicts[Verdict.HELD_BACK]:
        notes.append(
            f"held back {_plural(held_back, 'invalid_event dead letter')} (sent unchanged, an "
            "invalid event fails again): add --reason invalid_event to re-drive anyway"
        )
    if unrecognised := verdicts[Verdict.UNRECOGNISED]:
        notes.append(
            f"ignored {_plural(unrecognised, 'record')} without a {DLQ_REASON} header: "
            "not a dead letter written by regen-sync"
        )
    if truncated := verdicts[Verdict.TRUNCATED]:
        notes.append(
            f"skipped {_plural(truncated, 'truncated dead letter')} ({DLQ_TRUNCATED_FROM}): "
            "the whole record is on the topic named in its regen-original-* headers"
        )
    if choice.superseded:
        notes.append(
            f"skipped {_plural(choice.superseded, 'older dead letter')} of an event "
            "dead-lettered again: only the latest of each event is re-driven"
        )
    if choice.over_limit:
        notes.append(
            f"left {_plural(choice.over_limit, 'more dead letter')} for later "
            f"(--limit {options.limit})"
        )
    chosen_ids = {dead_letter.event_id for dead_letter in choice.chosen}
    if absent := sorted(options.selection.event_ids - chosen_ids):
        # A --csv report can list thousands.
        listed = ", ".join(absent[:_ABSENT_LISTED])
        more = f" and {len(absent) - _ABSENT_LISTED} more" if len(absent) > _ABSENT_LISTED else ""
        notes.append(f"no dead letter selected for event id {listed}{more}")
    return notes


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
