"""What ``regen-sync redrive`` re-drives, decided on records in memory (no Kafka, no files):
each dead letter read from its headers and event, the filters' verdict, the latest dead letter
of each event, the headers a republished record carries, and why matching dead letters were
not selected.

Each dead letter is read as a ``DeadLetter`` (its value stays on the topic, so memory follows
the number of matching dead letters, not their size); ``Scan`` keeps the matching ones and
counts the verdicts; ``choose`` picks what is sent; ``redriven_headers`` marks the record sent.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from regen_sync.domain import FailureReason
from regen_sync.kafka.publishing import DLQ_FAILED_AT, DLQ_REASON, DLQ_TRUNCATED_FROM
from regen_sync.operator.output import plural
from regen_sync.operator.records import Record, json_object, last_header
from regen_sync.processing import REDRIVE_HEADER, redrive_count

REDRIVEN_FROM = "regen-redriven-from"
"""Added to every republished record: the dead letter it came from, ``topic/partition/offset``."""
# regen-sync's own headers: the dead letter's error description, and the marks of an earlier
# re-drive. None of them belongs on an input record.
_OWN_HEADER_PREFIX = "regen-"
_ABSENT_LISTED = 20


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
    document = json_object(value) or {}
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


@dataclass
class Scan:
    """The dead letters read so far: how many, the matching ones, and every verdict counted."""

    selection: Selection
    scanned: int = 0
    matching: list[DeadLetter] = field(default_factory=list)
    verdicts: collections.Counter[Verdict] = field(default_factory=collections.Counter)

    def add(self, records: Iterable[Record]) -> None:
        for record in records:
            dead_letter = read_dead_letter(record)
            verdict = self.selection.verdict(dead_letter)
            self.verdicts[verdict] += 1
            self.scanned += 1
            if verdict is Verdict.MATCHING:
                self.matching.append(dead_letter)


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


def summary_notes(
    verdicts: collections.Counter[Verdict],
    choice: Choice,
    selection: Selection,
    limit: int | None,
) -> list[str]:
    """Why dead letters matching the filters were not selected, and which events asked for
    have none selected."""
    notes = []
    if held_back := verdicts[Verdict.HELD_BACK]:
        notes.append(
            f"held back {plural(held_back, 'invalid_event dead letter')} (sent unchanged, an "
            "invalid event fails again): add --reason invalid_event to re-drive anyway"
        )
    if unrecognised := verdicts[Verdict.UNRECOGNISED]:
        notes.append(
            f"ignored {plural(unrecognised, 'record')} without a {DLQ_REASON} header: "
            "not a dead letter written by regen-sync"
        )
    if truncated := verdicts[Verdict.TRUNCATED]:
        notes.append(
            f"skipped {plural(truncated, 'truncated dead letter')} ({DLQ_TRUNCATED_FROM}): "
            "the whole record is on the topic named in its regen-original-* headers"
        )
    if choice.superseded:
        notes.append(
            f"skipped {plural(choice.superseded, 'older dead letter')} of an event "
            "dead-lettered again: only the latest of each event is re-driven"
        )
    if choice.over_limit:
        notes.append(
            f"left {plural(choice.over_limit, 'more dead letter')} for later (--limit {limit})"
        )
    chosen_ids = {dead_letter.event_id for dead_letter in choice.chosen}
    if absent := sorted(selection.event_ids - chosen_ids):
        # A --csv report can list thousands.
        listed = ", ".join(absent[:_ABSENT_LISTED])
        more = f" and {len(absent) - _ABSENT_LISTED} more" if len(absent) > _ABSENT_LISTED else ""
        notes.append(f"no dead letter selected for event id {listed}{more}")
    return notes
