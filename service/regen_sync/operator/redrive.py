"""``regen-sync redrive``: republish dead-lettered events to the input topic.

A dead letter holds the input record's value, key and headers unchanged, so republishing them
gives the service the same event again, with the same id, marked as re-driven once more
(``regen-redrive``): Zuora keeps every answer under its Idempotency-Key, so a re-drive must
start from keys of its own, or a fixed document would be answered the stored failure again.

What is re-driven is decided in ``redrive_selection``; this module reads and sends. The
dead-letter topic is read from its beginning up to its end at start, with manually assigned
partitions and no consumer group: the run ends, nothing is committed, nothing is removed, and
nothing it republishes (elsewhere) is read back.

Two passes keep memory proportional to the number of dead letters matching the filters, not
to their size: the first reads every dead letter's headers and event attributes and chooses; the
second reads only the offset ranges holding the chosen ones and sends those, in dead-letter
order within each partition, so events of one object (one key, one partition) keep their
order.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from regen_sync.operator.clients import (
    Message,
    groupless_consumer,
    send_in_order,
    started_producer,
)
from regen_sync.operator.entry import CommandRefused, KafkaWork, NothingToDo, run_kafka_command
from regen_sync.operator.metadata import TopicInfo, usable_topics
from regen_sync.operator.output import Progress, describe_error
from regen_sync.operator.reading import read_ranges, read_to_the_end
from regen_sync.operator.records import Record
from regen_sync.operator.redrive_selection import (
    Choice,
    DeadLetter,
    Scan,
    Selection,
    as_utc,
    choose,
    redriven_headers,
    summary_notes,
)
from regen_sync.operator.rows import RowsRefused, report_event_ids
from regen_sync.operator.settings import KafkaClientSettings, load_kafka_client_settings


class RedriveRefused(CommandRefused):
    """Arguments the command refuses before connecting to anything (exit 2)."""


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

    def accept() -> KafkaWork:
        settings = load_kafka_client_settings()
        options = _options(arguments, settings)
        return KafkaWork(settings.kafka, _redrive(settings, options))

    return run_kafka_command("redrive", accept)


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
            raise NothingToDo(
                f"--csv {csv_path} lists no event id (with an outcome column: none failed); "
                "nothing re-driven"
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


async def _redrive(settings: KafkaClientSettings, options: RedriveOptions) -> int:
    dead_letter_topic = settings.topics.dead_letter
    seconds = options.seconds
    described = await usable_topics(settings.kafka, [dead_letter_topic, options.target], seconds)
    async with groupless_consumer(settings.kafka, seconds) as consumer:
        scan = await _scan(consumer, described[dead_letter_topic], options.selection, seconds)
        choice = choose(scan.matching, options.limit)
        if options.dry_run:
            for dead_letter in choice.chosen:
                print(f"would send {dead_letter.describe()}", flush=True)
            sending = Sending()
        else:
            sending = await _republish(settings, consumer, choice.chosen, options.target, seconds)
    _summarise(scan, choice, sending, options)
    return 0 if sending.complete(choice) or options.dry_run else 1


async def _scan(
    consumer: AIOKafkaConsumer, topic: TopicInfo, selection: Selection, seconds: float
) -> Scan:
    partitions = [TopicPartition(topic.name, number) for number in topic.partitions]
    starts = await consumer.beginning_offsets(partitions)
    # Fixed at start: dead letters written while this runs wait for the next run.
    ends = await consumer.end_offsets(partitions)
    ranges = {partition: range(starts[partition], ends[partition]) for partition in partitions}
    scan = Scan(selection)
    progress = Progress("scanned", sum(len(offsets) for offsets in ranges.values()))
    async for records in read_to_the_end(consumer, ranges, seconds):
        scan.add(records)
        progress.update(scan.scanned)
    progress.finish(scan.scanned)
    return scan


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
    sending = Sending()
    progress = Progress("sent", len(chosen))
    try:
        async with (
            started_producer(settings.kafka, seconds) as producer,
            contextlib.aclosing(read_ranges(consumer, ranges, seconds)) as batches,
        ):
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
        progress.finish(sending.sent)
    sending.missing = [dead_letter.origin for dead_letter in waiting.values()]
    return sending


async def _send_batch(
    producer: AIOKafkaProducer,
    target: str,
    batch: list[tuple[Record, DeadLetter]],
    sending: Sending,
) -> None:
    messages = [
        Message(record.key, record.value, redriven_headers(record.headers, dead_letter.origin))
        for record, dead_letter in batch
    ]
    outcomes = await send_in_order(producer, target, messages)
    for (_, dead_letter), outcome in zip(batch, outcomes, strict=False):
        if isinstance(outcome, BaseException):
            sending.failed.append(f"{dead_letter.origin}: {describe_error(outcome)}")
            continue
        sending.sent += 1
        print(
            f"sent {dead_letter.describe()} to {target}/{outcome.partition}/{outcome.offset}",
            flush=True,
        )


def _summarise(scan: Scan, choice: Choice, sending: Sending, options: RedriveOptions) -> None:
    sent = (
        f"0 (dry run: nothing sent to {options.target})"
        if options.dry_run
        else f"{sending.sent} to {options.target}"
    )
    print(f"scanned {scan.scanned}, selected {len(choice.chosen)}, sent {sent}")
    for note in summary_notes(scan.verdicts, choice, options.selection, options.limit):
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
