"""``regen-sync trace``: what happened to one event, read from the four topics.

An event's story is spread over the topics: its input record (and the records a re-drive
republished, same id, marked ``regen-redriven-from`` / ``regen-redrive``), its dead letters
(the input record again, with ``regen-error-*`` headers), and its results, whose
``data.sourceEventId`` is its id (also when another event's upstream call served it: then
``data.servedByEventId`` names that event). This command finds them within a time window
and prints them as one timeline, oldest first.

Each partition is read from the first offset at or after the window's start, as the broker's
time index answers it (ListOffsets by timestamp), up to its end taken at start, with manually
assigned partitions and no consumer group: nothing is committed. Records are then kept only
when their timestamp is in the window, so every broker shows the same timeline whatever its
time index answered.

Tansu (the broker of the dev stack and the tests, 0.6.0) answers ListOffsets by timestamp
without an error but ignores the timestamp: offset 0 for every partition, for a past
timestamp as for a future one (where Kafka answers "no such record"). On Tansu the command
therefore reads each partition from its beginning; that answer is only a lower bound, which
reading from it and filtering by timestamp turns into the same result. A broker that does not
know the request at all (before Kafka 0.10.1) is read from the beginning the same way.

The reading part (``_read_window``, reading each partition to its true end with
``reading.read_to_the_end``) is the only part that talks to Kafka; turning records into
entries (``Collector``), deciding the status (``Trace``) and printing (``timeline_lines``,
``trace_document``) work on records in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import enum
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, UnsupportedVersionError

from regen_sync.config import TopicSettings
from regen_sync.domain import REGENERATION_FAILED, REGENERATION_SUCCEEDED
from regen_sync.kafka.publishing import (
    DLQ_MESSAGE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    DLQ_TRUNCATED_FROM,
)
from regen_sync.operator.clients import groupless_consumer
from regen_sync.operator.entry import CommandRefused, KafkaWork, run_kafka_command
from regen_sync.operator.metadata import UnusableTopics, usable_topics
from regen_sync.operator.output import Progress
from regen_sync.operator.reading import read_to_the_end
from regen_sync.operator.records import Record, json_object, last_header
from regen_sync.operator.redrive_selection import REDRIVEN_FROM
from regen_sync.operator.settings import KafkaClientSettings, load_kafka_client_settings
from regen_sync.processing import redrive_count

UPSTREAM_ID_FIELDS = ("idList", "invoiceId", "invoiceIds", "creditMemoIds", "journalId")
"""The ``data.upstream`` fields of a succeeded result that name what the upstream made."""
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(?:\d+[smhdw])+")
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_SERVED_LISTED = 10
# Characters JSON writers do not escape: a run of them from the id is in every serialisation of
# it, so a record without that run cannot hold the id and need not be parsed.
_UNESCAPED_RUN = re.compile(r"[A-Za-z0-9._:-]+")
_TOPIC_VARIABLES = {
    "input": "REGEN_TOPICS__INPUT",
    "succeeded": "REGEN_TOPICS__SUCCEEDED",
    "failed": "REGEN_TOPICS__FAILED",
    "dead_letter": "REGEN_TOPICS__DEAD_LETTER",
}


class TraceRefused(CommandRefused):
    """Arguments or configuration the command refuses (exit 2)."""


class What(enum.StrEnum):
    """What a record says happened; the value is the JSON name."""

    RECEIVED = "received"
    REDRIVEN = "redriven"
    DEAD_LETTERED = "dead_lettered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def is_input(self) -> bool:
        return self in (What.RECEIVED, What.REDRIVEN)

    @property
    def is_result(self) -> bool:
        return self in (What.SUCCEEDED, What.FAILED)


_LABELS = {
    What.RECEIVED: "received",
    What.REDRIVEN: "re-driven input",
    What.DEAD_LETTERED: "dead-lettered",
    What.SUCCEEDED: "succeeded",
    What.FAILED: "failed",
}
# Among records of the same millisecond: the input comes first, then its dead letter, then its
# result (the service publishes them in that order).
_RANK = {
    What.RECEIVED: 0,
    What.REDRIVEN: 0,
    What.DEAD_LETTERED: 1,
    What.SUCCEEDED: 2,
    What.FAILED: 2,
}


class Status(enum.StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"
    """Seen, but no result after its latest input record (yet)."""
    NOT_FOUND = "not_found"

    @property
    def exit_status(self) -> int:
        """0 for an outcome (a failure is one too), 1 while pending, 2 when never seen."""
        return {Status.PENDING: 1, Status.NOT_FOUND: 2}.get(self, 0)


EXIT_KAFKA_FAILED = 3
"""Kafka could not be read: neither "pending" (1) nor "not found" (2) can be said."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One record of the event's story."""

    time: dt.datetime
    """The record's timestamp."""
    topic: str
    partition: int
    offset: int
    what: What
    event_type: str | None = None
    """The input event's type (results name it too)."""
    source: str | None = None
    """The input event's CloudEvent source (inputs and dead letters)."""
    reason: str | None = None
    message: str | None = None
    attempts: int | None = None
    served_by: str | None = None
    """The event whose upstream call served this one, when it was another event."""
    upstream_ids: dict[str, Any] = field(default_factory=dict)
    http_status: int | None = None
    retryable: bool | None = None
    upstream_error: dict[str, Any] | None = None
    """A failure's ``upstreamError``: Zuora ``reasons`` / ``Errors``, or ProblemDetails."""
    problems: tuple[str, ...] = ()
    """Why an invalid event is invalid."""
    redrive: int | None = None
    """The ``regen-redrive`` count of an input record or dead letter, when it has one."""
    redriven_from: str | None = None
    """The dead letter a re-driven input record was republished from."""
    input_record: str | None = None
    """The input record a dead letter is a copy of (its ``regen-original-*`` headers)."""
    truncated: bool = False
    """A dead letter whose value was cut to fit the dead-letter topic."""

    @property
    def origin(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @property
    def order(self) -> tuple[dt.datetime, int, str, int, int]:
        return (self.time, _RANK[self.what], self.topic, self.partition, self.offset)

    def details(self) -> str:
        """The free-text column: what the other columns do not say."""
        parts: list[str] = []
        match self.what:
            case What.RECEIVED:
                parts.append(self.event_type or "")
            case What.REDRIVEN:
                count = f"re-drive {self.redrive}" if self.redrive is not None else "re-drive"
                parts.append(f"{count} of dead letter {self.redriven_from}")
            case What.DEAD_LETTERED:
                if self.input_record:
                    parts.append(f"input {self.input_record}")
                if self.truncated:
                    parts.append("value truncated")
                parts.append(self.message or "")
            case What.SUCCEEDED | What.FAILED:
                if self.served_by:
                    parts.append(f"served by {self.served_by}")
                parts.extend(f"{name}={_text(value)}" for name, value in self.upstream_ids.items())
                said = self.message or ""
                status = self.http_status
                # A success:false comes with 200: only an error status says something.
                if status is not None and status >= 300 and f"HTTP {status}" not in said:
                    parts.append(f"HTTP {status}")
                parts.append(said)
                more = [*_upstream_error_texts(self.upstream_error, said), *self.problems]
                parts.extend(text for text in dict.fromkeys(more) if text not in said)
        return "; ".join(" ".join(part.split()) for part in parts if part)

    def document(self) -> dict[str, Any]:
        return {
            "time": iso(self.time),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "what": self.what.value,
            "eventType": self.event_type,
            "source": self.source,
            "reason": self.reason,
            "message": self.message,
            "attempts": self.attempts,
            "servedBy": self.served_by,
            "upstreamIds": self.upstream_ids,
            "httpStatus": self.http_status,
            "retryable": self.retryable,
            "upstreamError": self.upstream_error,
            "problems": list(self.problems),
            "redrive": self.redrive,
            "redrivenFrom": self.redriven_from,
            "inputRecord": self.input_record,
            "truncated": self.truncated,
        }


@dataclass(frozen=True, slots=True)
class Trace:
    """Everything found of one event within the window."""

    event_id: str
    since: dt.datetime
    until: dt.datetime
    entries: tuple[Entry, ...] = ()
    """Oldest first."""
    served: tuple[str, ...] = ()
    """Other events whose results name this event's upstream call (coalescing)."""

    @property
    def latest_input(self) -> Entry | None:
        inputs = [entry for entry in self.entries if entry.what.is_input]
        return inputs[-1] if inputs else None

    @property
    def outcome(self) -> Entry | None:
        """The latest result published after the latest input record (any result, when no
        input record is in the window)."""
        latest = self.latest_input
        results = [
            entry
            for entry in self.entries
            if entry.what.is_result and (latest is None or entry.order > latest.order)
        ]
        return results[-1] if results else None

    @property
    def status(self) -> Status:
        if not self.entries:
            return Status.NOT_FOUND
        outcome = self.outcome
        if outcome is None:
            return Status.PENDING
        return Status.SUCCEEDED if outcome.what is What.SUCCEEDED else Status.FAILED

    @property
    def input_seen(self) -> bool:
        return self.latest_input is not None

    def notes(self) -> list[str]:
        notes = []
        window = f"since {iso(self.since)}"
        if self.entries and not self.input_seen:
            notes.append(
                f"the input record was not seen {window}: the input topic's retention may be "
                "shorter than the window"
            )
        latest = self.latest_input
        if self.status is Status.PENDING and latest is not None:
            notes.append(f"no result after the latest input record {latest.origin} yet")
        sources = sorted({entry.source for entry in self.entries if entry.source})
        if len(sources) > 1:
            notes.append(
                f"records of {len(sources)} sources carry this id ({', '.join(sources)}): "
                "they are different events"
            )
        if served := self.served:
            # A backfill storm's first event can serve thousands; --json lists them all.
            listed = ", ".join(served[:_SERVED_LISTED])
            more = (
                f" and {len(served) - _SERVED_LISTED} more" if len(served) > _SERVED_LISTED else ""
            )
            notes.append(
                f"its upstream call also served {len(served)} other event"
                f"{'' if len(served) == 1 else 's'}: {listed}{more}"
            )
        return notes


class Collector:
    """Turns the records read into the event's entries; ignores every other record."""

    def __init__(self, event_id: str, topics: TopicSettings, since: dt.datetime) -> None:
        self._event_id = event_id
        self._needle = max(_UNESCAPED_RUN.findall(event_id), key=len, default="").encode()
        self._since_ms = int(since.timestamp() * 1000)
        self._inputs = {topics.input}
        self._results = {topics.succeeded, topics.failed}
        self._dead_letters = {topics.dead_letter}
        self._entries: list[Entry] = []
        self._served: dict[str, None] = {}

    def add(self, record: Record) -> None:
        # Kafka gives every record a timestamp since 0.10; -1 (none) is outside any window.
        if record.timestamp < self._since_ms:
            return
        value = record.value
        if value is None or self._needle not in value:
            return
        document = json_object(value)
        topic = record.topic
        headers = record.headers
        entry: Entry | None = None
        if topic in self._dead_letters and last_header(headers, DLQ_REASON) is not None:
            entry = self._dead_letter(record, document)
        elif topic in self._results and document is not None:
            entry = self._result(record, document)
        elif topic in self._inputs and document is not None:
            entry = self._input(record, document)
        if entry is not None:
            self._entries.append(entry)

    def trace(self, until: dt.datetime) -> Trace:
        since = dt.datetime.fromtimestamp(self._since_ms / 1000, dt.UTC)
        entries = tuple(sorted(self._entries, key=lambda entry: entry.order))
        return Trace(self._event_id, since, until, entries, tuple(self._served))

    def _input(self, record: Record, document: dict[str, Any]) -> Entry | None:
        if document.get("id") != self._event_id:
            return None
        redriven_from = last_header(record.headers, REDRIVEN_FROM)
        return Entry(
            **_place(record),
            what=What.RECEIVED if redriven_from is None else What.REDRIVEN,
            event_type=_string(document.get("type")),
            source=_string(document.get("source")),
            redrive=redrive_count(record.headers),
            redriven_from=redriven_from,
        )

    def _dead_letter(self, record: Record, document: dict[str, Any] | None) -> Entry | None:
        headers = record.headers
        truncated = last_header(headers, DLQ_TRUNCATED_FROM) is not None
        if document is not None:
            if document.get("id") != self._event_id:
                return None
        elif not (truncated and record.value and self._names_id(record.value)):
            return None
        original = [
            last_header(headers, name)
            for name in (DLQ_ORIGINAL_TOPIC, DLQ_ORIGINAL_PARTITION, DLQ_ORIGINAL_OFFSET)
        ]
        document = document or {}
        return Entry(
            **_place(record),
            what=What.DEAD_LETTERED,
            event_type=_string(document.get("type")),
            source=_string(document.get("source")),
            reason=last_header(headers, DLQ_REASON),
            message=last_header(headers, DLQ_MESSAGE),
            redrive=redrive_count(headers),
            input_record="/".join(part or "?" for part in original) if any(original) else None,
            truncated=truncated,
        )

    def _names_id(self, value: bytes) -> bool:
        """Whether a cut JSON value (not parseable any more) has this event's ``"id"``."""
        quoted = re.escape(json.dumps(self._event_id).encode())
        return re.search(rb'"id"\s*:\s*' + quoted, value) is not None

    def _result(self, record: Record, document: dict[str, Any]) -> Entry | None:
        data = document.get("data")
        if not isinstance(data, dict):
            return None
        result_type = document.get("type")
        if result_type == REGENERATION_SUCCEEDED:
            what = What.SUCCEEDED
        elif result_type == REGENERATION_FAILED:
            what = What.FAILED
        else:
            return None
        source_id, served_by = data.get("sourceEventId"), data.get("servedByEventId")
        if source_id != self._event_id:
            if served_by == self._event_id and isinstance(source_id, str):
                self._served[source_id] = None
            return None
        upstream = data.get("upstream")
        upstream = upstream if isinstance(upstream, dict) else {}
        status = data.get("httpStatus")
        attempts = data.get("attempts")
        retryable = data.get("retryable")
        upstream_error = data.get("upstreamError")
        problems = data.get("problems")
        return Entry(
            **_place(record),
            what=what,
            event_type=_string(data.get("sourceEventType")),
            reason=_string(data.get("reason")),
            message=_string(data.get("message")),
            attempts=attempts if _is_int(attempts) else None,
            served_by=(
                served_by if isinstance(served_by, str) and served_by != self._event_id else None
            ),
            upstream_ids={name: upstream[name] for name in UPSTREAM_ID_FIELDS if name in upstream},
            http_status=status if _is_int(status) else None,
            retryable=retryable if isinstance(retryable, bool) else None,
            upstream_error=upstream_error if isinstance(upstream_error, dict) else None,
            problems=tuple(_texts(problems)),
        )


def _place(record: Record) -> dict[str, Any]:
    return {
        "time": dt.datetime.fromtimestamp(record.timestamp / 1000, dt.UTC),
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
    }


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _texts(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _upstream_error_texts(error: dict[str, Any] | None, message: str) -> list[str]:
    """What the upstream said, in a few words: each Zuora reason or error as ``code: text``
    (only ``code …`` when ``message`` already has the text), or a ProblemDetails' ``detail``
    (else its ``title``)."""
    if error is None:
        return []
    said = []
    for name, code_field, text_field in (
        ("reasons", "code", "message"),
        ("Errors", "Code", "Message"),
    ):
        for item in error.get(name) or []:
            if not isinstance(item, dict):
                continue
            code, text = item.get(code_field), item.get(text_field)
            if text is not None and str(text) not in message:
                said.append(f"{code}: {text}" if code is not None else str(text))
            elif code is not None:
                said.append(f"code {code}")
    problem = error.get("detail") or error.get("title")
    if isinstance(problem, str):
        said.append(problem)
    return said


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def iso(moment: dt.datetime) -> str:
    """UTC, milliseconds, ``Z``: 2026-11-21T10:00:00.123Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_duration(text: str) -> dt.timedelta:
    """``30s``, ``90m``, ``24h``, ``7d``, ``2w``, or a sum such as ``1h30m``; more than 0."""
    cleaned = text.strip().lower()
    if not _DURATION.fullmatch(cleaned):
        raise ValueError(f"{text!r} is not a duration such as 30s, 90m, 24h or 7d")
    seconds = sum(int(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(cleaned))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not more than 0 seconds")
    return dt.timedelta(seconds=seconds)


# --- printing ------------------------------------------------------------------------------------

_COLUMNS = ("TIME", "RECORD", "WHAT", "REASON", "ATTEMPTS", "DETAILS")


def timeline_lines(trace: Trace, window: str) -> list[str]:
    """The human view: a heading, one row per entry in fixed columns, the outcome, notes."""
    lines = [f"event {trace.event_id}, last {window} (since {iso(trace.since)})"]
    rows = [
        (
            iso(entry.time),
            entry.origin,
            entry.what.label,
            entry.reason or "",
            "" if entry.attempts is None else str(entry.attempts),
            entry.details(),
        )
        for entry in trace.entries
    ]
    widths = [max(len(cell) for cell in column) for column in zip(_COLUMNS, *rows, strict=True)]
    for row in [_COLUMNS, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    lines.append(f"status: {_status_line(trace)}")
    lines.extend(f"note: {note}" for note in trace.notes())
    return lines


def _status_line(trace: Trace) -> str:
    outcome = trace.outcome
    if outcome is not None:
        reason = f" ({outcome.reason})" if outcome.reason else ""
        return f"{outcome.what.label}{reason} at {iso(outcome.time)}, {outcome.origin}"
    if trace.status is Status.PENDING:
        return "pending: no outcome after the latest input record yet"
    return "not found"


def trace_document(trace: Trace, window: str) -> dict[str, Any]:
    """The ``--json`` view."""
    outcome = trace.outcome
    return {
        "eventId": trace.event_id,
        "window": {"duration": window, "since": iso(trace.since), "until": iso(trace.until)},
        "status": trace.status.value,
        "inputSeen": trace.input_seen,
        "outcome": outcome.document() if outcome is not None else None,
        "entries": [entry.document() for entry in trace.entries],
        "servedEvents": list(trace.served),
        "notes": trace.notes(),
    }


# --- the command ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceOptions:
    event_id: str
    window: str
    """As given, e.g. ``24h``."""
    duration: dt.timedelta
    as_json: bool
    seconds: float


def trace_command(arguments: argparse.Namespace) -> int:
    """0 when the event has an outcome (succeeded or failed), 1 when it was seen but has no
    outcome after its latest input record, 2 when nothing of it is in the window or for
    invalid configuration or arguments, 3 when Kafka could not be read."""

    def accept() -> KafkaWork:
        options = _options(arguments)
        settings = load_kafka_client_settings()
        return KafkaWork(settings.kafka, _trace_command(settings, options))

    return run_kafka_command("trace", accept, kafka_failed=EXIT_KAFKA_FAILED)


async def _trace_command(settings: KafkaClientSettings, options: TraceOptions) -> int:
    trace = await _trace(settings, options, dt.datetime.now(dt.UTC))
    if options.as_json:
        print(json.dumps(trace_document(trace, options.window), indent=2))
    elif trace.entries:
        print("\n".join(timeline_lines(trace, options.window)))
    if trace.status is Status.NOT_FOUND:
        topics = settings.topics
        names = ", ".join(dict.fromkeys(topics.model_dump().values()))
        print(
            f"regen-sync trace: event {options.event_id} not found: no record of it in the "
            f"last {options.window} (since {iso(trace.since)}) on {names}",
            file=sys.stderr,
        )
    return trace.status.exit_status


def _options(arguments: argparse.Namespace) -> TraceOptions:
    event_id: str = arguments.event_id
    if not event_id:
        raise TraceRefused("EVENT_ID must not be empty")
    try:
        duration = parse_duration(arguments.since)
    except ValueError as error:
        raise TraceRefused(f"--since: {error}") from None
    return TraceOptions(
        event_id=event_id,
        window=arguments.since.strip(),
        duration=duration,
        as_json=arguments.json,
        seconds=arguments.timeout,
    )


async def _trace(settings: KafkaClientSettings, options: TraceOptions, until: dt.datetime) -> Trace:
    topics = settings.topics
    since = until - options.duration
    collector = Collector(options.event_id, topics, since)
    names = list(dict.fromkeys(topics.model_dump().values()))
    seconds = options.seconds
    try:
        described = await usable_topics(settings.kafka, names, seconds)
    except UnusableTopics as unusable:
        if unknown := [topic for topic in unusable.topics if not topic.missing]:
            raise KafkaError(f"topic {unknown[0].name} {unknown[0].problem}") from None
        missing = {topic.name for topic in unusable.topics}
        raise TraceRefused(
            "invalid configuration: "
            + "; ".join(
                f"topic {name} ({_TOPIC_VARIABLES[role]}) does not exist"
                for role, name in topics.model_dump().items()
                if name in missing
            )
        ) from None
    partitions = [
        TopicPartition(name, number) for name in names for number in described[name].partitions
    ]
    async with groupless_consumer(settings.kafka, seconds) as consumer:
        await _read_window(consumer, partitions, since, seconds, collector)
    return collector.trace(until)


async def _read_window(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    since: dt.datetime,
    seconds: float,
    collector: Collector,
) -> None:
    ranges = await window_ranges(consumer, partitions, int(since.timestamp() * 1000), seconds)
    progress = Progress("scanned", sum(len(offsets) for offsets in ranges.values()))
    scanned = 0
    async for records in read_to_the_end(consumer, ranges, seconds):
        for record in records:
            collector.add(record)
        scanned += len(records)
        progress.update(scanned)
    progress.finish(scanned)


async def window_ranges(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    since_ms: int,
    seconds: float,
) -> dict[TopicPartition, range]:
    """Per partition, the offsets from the first record at or after ``since_ms`` to the end
    offset now; empty where no record is that recent."""
    partitions = list(partitions)
    async with asyncio.timeout(seconds):
        beginnings = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        try:
            found = await consumer.offsets_for_times(dict.fromkeys(partitions, since_ms))
        except UnsupportedVersionError:
            # A broker older than Kafka 0.10.1 has no time index: read from the beginning.
            found = {partition: _Found(beginnings[partition], since_ms) for partition in partitions}
    ranges = {}
    for partition in partitions:
        beginning, end, at = beginnings[partition], ends[partition], found.get(partition)
        if end <= beginning or at is None:
            # Empty, or (Kafka) no record at or after since_ms.
            ranges[partition] = range(0)
            continue
        # At least the last record the end offset admits: its fetch reports the real end
        # (Tansu's end offset can be below it, see reading.TansuEndOffsets). Tansu answers
        # offset 0.
        start = max(beginning, min(at.offset, end - 1))
        ranges[partition] = range(start, end)
    return ranges


@dataclass(frozen=True, slots=True)
class _Found:
    """Like aiokafka's OffsetAndTimestamp."""

    offset: int
    timestamp: int
