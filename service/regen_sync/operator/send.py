"""``regen-sync send``: publish an input event for a smoke test, and optionally await its result;
or a batch, one event per row of a CSV or JSON Lines file, with a report of each row's outcome.

The event comes from flags or a file and is validated by the service's own parser before it
is sent; ``--allow-invalid`` sends a refused one anyway, to exercise the dead-letter path.
It is keyed by its business object, as producers are asked to, so copies of one event run
one after another like real events for one object.

A batch (``--csv`` / ``--jsonl``, rows read by ``regen_sync.operator.rows``) is read twice and
never held in memory: every row is validated first, and nothing is sent if one is invalid
(unless ``--skip-invalid``); then the rows are read again and sent, a window of
acknowledgements at a time. Row n is the event ``<batch>-n``. With ``--wait``, results and
dead letters are read while sending, and what became of each row is kept in a byte per row.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.structs import RecordMetadata

from regen_sync.domain import REGENERATION_SUCCEEDED, InvalidEvent, parse_event, plan
from regen_sync.kafka.publishing import CLOUDEVENTS_JSON
from regen_sync.operator.clients import Message, send_in_order, started_producer
from regen_sync.operator.entry import CommandRefused, KafkaWork, run_kafka_command
from regen_sync.operator.event_flags import (
    DEFAULT_SOURCE,
    data_fields,
    event_from_arguments,
    flag_name,
)
from regen_sync.operator.metadata import usable_topics
from regen_sync.operator.output import Progress, describe_error, format_duration, plural
from regen_sync.operator.reading import POLL_SECONDS, Tail
from regen_sync.operator.records import Record, json_object
from regen_sync.operator.rows import (
    CSV,
    JSONL,
    BatchIds,
    CheckedRow,
    ResultDetails,
    RowChecker,
    RowFile,
    RowOutcomes,
    RowsRefused,
    check_batch_name,
    check_report_path,
    default_batch_name,
    file_stats,
    write_report,
)
from regen_sync.operator.settings import KafkaClientSettings, load_kafka_client_settings

_BATCH_SIZE = 500
_HEADERS = [("content-type", CLOUDEVENTS_JSON.encode())]
_MAX_IDS_LISTED = 10
_T = TypeVar("_T")


class SendRefused(CommandRefused):
    """Arguments or an event the command refuses before connecting to anything (exit 2)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    event_id: str | None
    key: bytes | None
    value: bytes


def send_command(arguments: argparse.Namespace) -> int:
    """0 when sent (and, with --wait, succeeded); 1 when not delivered, failed or no result
    in time; 2 for invalid configuration, arguments or event."""
    if _rows_file(arguments) is not None:
        return send_rows_command(arguments)

    def accept() -> KafkaWork:
        settings = load_kafka_client_settings()
        events = prepare(arguments, max_event_bytes=settings.processing.max_event_bytes)
        work = _send(
            settings, events, arguments.count, wait=arguments.wait, seconds=arguments.timeout
        )
        return KafkaWork(settings.kafka, work)

    return run_kafka_command("send", accept)


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
    has_ids = _event_id(raw) if arguments.count == 1 else json_object(raw)
    if arguments.wait and has_ids is None:
        raise SendRefused("--wait matches results by event id, and this event has none")
    return copies(raw, arguments.count, key)


def copies(raw: bytes, count: int, key: bytes | None) -> Iterator[Outgoing]:
    """One event as given, or ``count`` copies each with a fresh id."""
    if count == 1:
        yield Outgoing(_event_id(raw), key, raw)
        return
    document = json_object(raw)
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
    batch_flags = [
        flag
        for flag, given in [
            ("--batch", getattr(arguments, "batch", None) is not None),
            ("--skip-invalid", getattr(arguments, "skip_invalid", False)),
            ("--report", getattr(arguments, "report", None) is not None),
        ]
        if given
    ]
    if batch_flags:
        raise SendRefused(f"{', '.join(batch_flags)} only with --csv or --jsonl")


def _read(path: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise SendRefused(f"cannot read {path}: {error.strerror}") from None


def _event_id(raw: bytes) -> str | None:
    document = json_object(raw)
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
    described = await usable_topics(settings.kafka, needed, seconds)
    if not wait:
        await _publish(settings, events, count, seconds)
        return 0
    results = [described[topics.succeeded], described[topics.failed]]
    async with Tail.open(settings.kafka, results, seconds) as tail:
        sent = await _publish(settings, events, count, seconds)
        return await ResultWatcher(tail).report(sent, seconds)


async def _publish(
    settings: KafkaClientSettings, events: Iterable[Outgoing], count: int, seconds: float
) -> dict[str, float]:
    """Sends every event and prints where each landed; returns when each id was acknowledged."""
    topic = settings.topics.input
    progress = Progress("sent", count)
    sent: dict[str, float] = {}
    done = 0
    async with started_producer(settings.kafka, seconds) as producer:
        for batch in _batches(events, _BATCH_SIZE):
            messages = [Message(event.key, event.value, _HEADERS) for event in batch]
            outcomes = await send_in_order(producer, topic, messages)
            records = [_acknowledged(outcome) for outcome in outcomes]
            for event, record in zip(batch, records, strict=True):
                print(
                    f"sent {event.event_id or '(no id)'} to {topic} "
                    f"partition {record.partition} offset {record.offset}",
                    flush=True,
                )
                if event.event_id is not None:
                    sent[event.event_id] = time.monotonic()
            done += len(batch)
            progress.update(done)
    progress.finish(done)
    return sent


def _acknowledged(outcome: RecordMetadata | BaseException) -> RecordMetadata:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _batches(events: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(events)
    while batch := list(islice(iterator, size)):
        yield batch


# --- results -------------------------------------------------------------------------------------


class ResultWatcher:
    """Awaits the results of the events sent, read from the result topics' tail."""

    def __init__(self, tail: Tail) -> None:
        self._tail = tail

    async def report(self, sent: dict[str, float], seconds: float) -> int:
        """Prints each event's result as it arrives; 0 when every one succeeded."""
        pending = set(sent)
        outcomes = {"succeeded": 0, "failed": 0}
        progress = Progress("results", len(sent))
        deadline = time.monotonic() + seconds
        while pending and (left := deadline - time.monotonic()) > 0:
            for record in await self._tail.poll(min(left, POLL_SECONDS)):
                result = json_object(record.value)
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


# --- a batch from a file -------------------------------------------------------------------------

_FAILURES_LISTED = 10
_DEAD_LETTER_GRACE_SECONDS = 5.0
"""How long, once every row has its result, to go on reading for failed rows' dead letters
(each is written before its result, so they are normally read already)."""


def _rows_file(arguments: argparse.Namespace) -> tuple[str, str] | None:
    """(kind, path) of --csv / --jsonl, when given."""
    for kind in (CSV, JSONL):
        path = getattr(arguments, kind, None)
        if path is not None:
            return kind, path
    return None


@dataclass(frozen=True, slots=True)
class Batch:
    file: RowFile
    checker: RowChecker
    name: str
    """The file as the operator named it, for messages."""
    digest: str
    lines: int

    @property
    def ids(self) -> BatchIds:
        return self.checker.ids

    def checked(self) -> Iterator[CheckedRow]:
        return self.checker.checked(self.file.rows())


@dataclass
class Validation:
    rows: int = 0
    invalid: int = 0


def send_rows_command(arguments: argparse.Namespace) -> int:
    """``send --csv`` / ``--jsonl``: 0 when every row was sent (with --wait: succeeded); 1
    when a row was skipped, not delivered, failed or had no result in time; 2 for invalid
    configuration, arguments, file, or an invalid row without --skip-invalid."""
    cleanup = contextlib.ExitStack()
    try:
        return _send_rows_command(arguments, cleanup)
    finally:
        cleanup.close()


def _send_rows_command(arguments: argparse.Namespace, cleanup: contextlib.ExitStack) -> int:
    def accept() -> KafkaWork:
        settings = load_kafka_client_settings()
        _check_rows_usage(arguments)
        try:
            batch = _open_batch(arguments, settings, cleanup)
            outcomes = (
                cleanup.enter_context(contextlib.closing(RowOutcomes())) if arguments.wait else None
            )
            validation = validate_rows(batch, outcomes)
        except RowsRefused as refusal:
            raise SendRefused(str(refusal)) from None
        if batch.file.read_digest != batch.digest:
            raise SendRefused(f"{batch.name} changed while it was read")
        if validation.rows == 0:
            raise SendRefused(f"{batch.name} has no rows")
        if validation.invalid and not arguments.skip_invalid:
            raise SendRefused(
                f"{plural(validation.invalid, 'invalid row')} of {validation.rows}, nothing "
                f"sent (--skip-invalid sends the other {validation.rows - validation.invalid})"
            )
        work = _send_rows(settings, batch, validation, outcomes, arguments)
        return KafkaWork(settings.kafka, work)

    return run_kafka_command("send", accept)


def _check_rows_usage(arguments: argparse.Namespace) -> None:
    if arguments.csv is not None and arguments.jsonl is not None:
        raise SendRefused("give --csv or --jsonl, not both")
    kind = "--csv" if arguments.csv is not None else "--jsonl"
    if arguments.type is None:
        raise SendRefused(f"{kind} needs --type: the event type of every row")
    flags = [
        flag
        for flag, given in [
            ("--file", arguments.file is not None),
            ("--id", arguments.id is not None),
            ("--count", arguments.count != 1),
            ("--allow-invalid", arguments.allow_invalid),
        ]
        + [(flag_name(name), getattr(arguments, name) is not None) for name in data_fields()]
        if given
    ]
    if flags:
        raise SendRefused(
            f"{kind} sends one event per row, with ids <batch>-<row>; drop {', '.join(flags)}"
        )
    if arguments.report is not None and not arguments.wait:
        raise SendRefused("--report needs --wait: it lists each row's result")


def _open_batch(
    arguments: argparse.Namespace, settings: KafkaClientSettings, cleanup: contextlib.ExitStack
) -> Batch:
    rows_file = _rows_file(arguments)
    assert rows_file is not None
    kind, given = rows_file
    path = _spooled_stdin(cleanup) if given == "-" else Path(given)
    name = "stdin" if given == "-" else given
    if arguments.report is not None:
        check_report_path(Path(arguments.report))
    stats = file_stats(path)
    ids = BatchIds(
        check_batch_name(arguments.batch)
        if arguments.batch is not None
        else default_batch_name(stats.digest)
    )
    checker = RowChecker(
        arguments.type,
        ids,
        source=arguments.source or DEFAULT_SOURCE,
        now=dt.datetime.now(dt.UTC),
        max_event_bytes=settings.processing.max_event_bytes,
    )
    return Batch(RowFile(path, kind, arguments.type), checker, name, stats.digest, stats.lines)


def _spooled_stdin(cleanup: contextlib.ExitStack) -> Path:
    """Standard input copied to a temporary file: rows are read once per pass."""
    directory = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="regen-sync-send-"))
    path = Path(directory) / "stdin"
    with path.open("wb") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool)
    return path


def validate_rows(batch: Batch, outcomes: RowOutcomes | None) -> Validation:
    """The first pass: every row validated, each problem printed with its line and column;
    with ``outcomes``, each row added to them."""
    validation = Validation()
    progress = Progress("validated lines", batch.lines)
    for checked in batch.checked():
        validation.rows += 1
        problems = None
        if not checked.valid:
            validation.invalid += 1
            for line in checked.describe_problems(batch.name):
                print(f"regen-sync send: {line}", file=sys.stderr, flush=True)
            problems = "; ".join(problem.describe() for problem in checked.problems)
        if outcomes is not None:
            outcomes.add(problems)
        progress.update(checked.row.line)
    progress.finish(batch.lines)
    return validation


@dataclass
class RowSending:
    sent: int = 0
    skipped: int = 0
    error: str | None = None
    """Why sending stopped before the end."""
    changed: bool = False
    """The file read for sending is not the file validated."""


async def _send_rows(
    settings: KafkaClientSettings,
    batch: Batch,
    validation: Validation,
    outcomes: RowOutcomes | None,
    arguments: argparse.Namespace,
) -> int:
    topics = settings.topics
    seconds: float = arguments.timeout
    results = [topics.succeeded, topics.failed, topics.dead_letter] if outcomes else []
    described = await usable_topics(settings.kafka, [topics.input, *results], seconds)
    async with contextlib.AsyncExitStack() as watching:
        watcher = None
        if outcomes is not None:
            tail = await watching.enter_async_context(
                Tail.open(settings.kafka, [described[name] for name in results], seconds)
            )
            watcher = BatchWatcher(tail, topics.dead_letter, outcomes, batch.ids)
        try:
            sending = await _publish_while_watching(
                settings, batch, validation, outcomes, watcher, seconds
            )
        except RowsRefused as error:
            # Readable when validated, not when read again to be sent.
            print(f"regen-sync send: stopped sending: {error}", file=sys.stderr)
            return 1
    return _summarise_rows(batch, validation, sending, outcomes, watcher, arguments)


async def _publish_while_watching(
    settings: KafkaClientSettings,
    batch: Batch,
    validation: Validation,
    outcomes: RowOutcomes | None,
    watcher: BatchWatcher | None,
    seconds: float,
) -> RowSending:
    """Sends the rows while the watcher, if any, collects their results; returns once it has
    them all, or gave up waiting."""
    if watcher is None:
        return await _publish_rows(settings, batch, validation, outcomes, seconds)
    collecting = asyncio.create_task(watcher.collect(seconds))
    try:
        sending = await _publish_rows(settings, batch, validation, outcomes, seconds)
        watcher.sending_finished(sending.sent)
        await collecting
        return sending
    finally:
        if not collecting.done():
            collecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await collecting


async def _publish_rows(
    settings: KafkaClientSettings,
    batch: Batch,
    validation: Validation,
    outcomes: RowOutcomes | None,
    seconds: float,
) -> RowSending:
    """The second pass: each valid row sent, keyed by its business object, a window of
    acknowledgements at a time; stops at the first row the broker refuses."""
    topic = settings.topics.input
    before = batch.file.path.stat()
    sending = RowSending()
    progress = Progress("sent", validation.rows - validation.invalid)

    def valid_rows() -> Iterator[CheckedRow]:
        for checked in batch.checked():
            if checked.row.number > validation.rows:
                sending.changed = True
                return
            if checked.valid:
                yield checked
            else:
                sending.skipped += 1

    async with started_producer(settings.kafka, seconds) as producer:
        for window in _batches(valid_rows(), _BATCH_SIZE):
            messages = [Message(checked.key, checked.value, _HEADERS) for checked in window]
            acknowledged = await send_in_order(producer, topic, messages)
            for checked, outcome in zip(window, acknowledged, strict=False):
                number = checked.row.number
                if isinstance(outcome, BaseException):
                    sending.error = sending.error or f"row {number}: {describe_error(outcome)}"
                    continue
                sending.sent += 1
                if outcomes is not None:
                    outcomes.mark_sent(number)
            progress.update(sending.sent)
            if sending.error:
                break
    progress.finish(sending.sent)
    after = batch.file.path.stat()
    if not sending.error and (
        (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns)
        or batch.file.read_digest != batch.digest
    ):
        sending.changed = True
    return sending


class BatchWatcher:
    """Reads the result and dead-letter topics' tail, and records each row's first result and
    whether its dead letter came."""

    def __init__(
        self, tail: Tail, dead_letter_topic: str, outcomes: RowOutcomes, ids: BatchIds
    ) -> None:
        self._tail = tail
        self._dead_letter_topic = dead_letter_topic
        self._outcomes = outcomes
        self._ids = ids
        self._marker = f'"{ids.name}-'.encode()
        self._sent: int | None = None
        self._sending_finished_at = 0.0

    def sending_finished(self, sent: int) -> None:
        self._sent = sent
        self._sending_finished_at = time.monotonic()

    async def collect(self, seconds: float) -> None:
        """Until every row sent has its result (and each failed one its dead letter, for up
        to a few seconds more), or nothing came for ``seconds`` once sending finished."""
        outcomes = self._outcomes
        progress: Progress | None = None
        last_news = time.monotonic()
        while True:
            news = False
            for record in await self._tail.poll(POLL_SECONDS):
                news |= self._take(record)
            now = time.monotonic()
            if news:
                last_news = now
            if self._sent is None:
                continue
            if progress is None:
                progress = Progress("results", self._sent)
            last_news = max(last_news, self._sending_finished_at)
            progress.update(outcomes.results)
            if outcomes.waiting == 0 and (
                outcomes.dead_lettered_failures == outcomes.failed
                or now - last_news > min(seconds, _DEAD_LETTER_GRACE_SECONDS)
            ):
                break
            if now - last_news > seconds:
                break
        progress.finish(outcomes.results)

    def _take(self, record: Record) -> bool:
        """Whether the record was news: a row's first result, or its dead letter."""
        value = record.value
        if not value or self._marker not in value:
            return False
        document = json_object(value)
        if document is None:
            return False
        outcomes = self._outcomes
        if record.topic == self._dead_letter_topic:
            event_id = document.get("id")
            number = self._ids.row_of(event_id) if isinstance(event_id, str) else None
            if number is None or number > len(outcomes) or outcomes.is_dead_lettered(number):
                return False
            outcomes.mark_dead_lettered(number)
            return True
        source_id = _source_event_id(document)
        number = self._ids.row_of(source_id) if source_id is not None else None
        if number is None:
            return False
        succeeded = document.get("type") == REGENERATION_SUCCEEDED
        return outcomes.record_result(number, ResultDetails.of(document, succeeded=succeeded))


def _summarise_rows(
    batch: Batch,
    validation: Validation,
    sending: RowSending,
    outcomes: RowOutcomes | None,
    watcher: BatchWatcher | None,
    arguments: argparse.Namespace,
) -> int:
    skipped = f", skipped {plural(sending.skipped, 'invalid row')}" if sending.skipped else ""
    print(
        f"sent {sending.sent} of {plural(validation.rows, 'row')} of {batch.name} as batch "
        f"{batch.ids.name} (event ids {batch.ids.event_id(1)} to "
        f"{batch.ids.event_id(validation.rows)}){skipped}",
        flush=True,
    )
    failed = sending.skipped > 0
    if sending.error is not None:
        print(f"regen-sync send: stopped sending at {sending.error}", file=sys.stderr)
        failed = True
    if sending.changed:
        print(
            f"regen-sync send: {batch.name} changed while it was being sent: the rows sent "
            "may not be the rows validated",
            file=sys.stderr,
        )
        failed = True
    if outcomes is None or watcher is None:
        return 1 if failed else 0
    seconds: float = arguments.timeout
    print(
        f"results: {outcomes.succeeded} succeeded, {outcomes.failed} failed "
        f"({outcomes.dead_lettered_failures} dead-lettered), {outcomes.waiting} without a "
        f"result within {seconds:g} s of the last one",
        flush=True,
    )
    no_result = f"no result within {seconds:g} s of the last one"
    not_sent = "not sent"
    for shown, number in enumerate(outcomes.failed_rows()):
        if shown == _FAILURES_LISTED:
            more = outcomes.failed - _FAILURES_LISTED
            print(f"and {more} more failed rows" + ("" if arguments.report else " (--report)"))
            break
        row = outcomes.report_row(number, batch.ids, no_result=no_result, not_sent=not_sent)
        print(f"failed: row {number} ({row.event_id}): {row.reason}: {row.message}")
    if arguments.report is not None:
        path = Path(arguments.report)
        try:
            written = write_report(
                path, outcomes.report_rows(batch.ids, no_result=no_result, not_sent=not_sent)
            )
        except OSError as error:
            print(f"regen-sync send: cannot write {path}: {error.strerror}", file=sys.stderr)
            return 1
        print(f"report: {path} ({plural(written, 'row')})")
    return 0 if outcomes.succeeded == validation.rows and not failed else 1
