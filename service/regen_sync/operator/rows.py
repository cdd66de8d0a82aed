"""A spreadsheet (CSV) or a JSON Lines file as input events, one per row, for
``regen-sync send --csv`` / ``--jsonl``; what became of each row; the report of it.

A file is read as a stream, one row at a time, once per pass (validate, then send, then write
the report): nothing here holds all the rows or all the events. What is kept per row while
results come in is one byte, plus the position of its details in a spool file.

CSV columns are the ``data`` field names of the event type, exactly as in the JSON Schemas.
Cells are read the way a spreadsheet writes them: booleans ``TRUE``/``FALSE``, ``true``/``1``/
``yes`` and their opposites; whole numbers as ``2`` or ``2.0``; dates ``YYYY-MM-DD``; list
fields as ``;``-separated values; a JSON object for an object field; an empty cell is an
absent field. A JSON Lines line is one JSON object of ``data`` fields, taken as it is.

Each row becomes the CloudEvent ``send`` would build, with the id ``<batch>-<row>``, and is
validated by the service's own parser on the bytes that will be sent.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, Any, get_origin

from regen_sync.domain import InvalidEvent, parse_event, plan
from regen_sync.operator.event_flags import DATA_MODELS, build_event, data_fields, value_type

CSV = "csv"
JSONL = "jsonl"
LIST_SEPARATOR = ";"
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_WHOLE_NUMBER = re.compile(r"[+-]?\d+(?:\.0*)?")
_BATCH_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,199}")
_SHOWN_CHARS = 60


class RowsRefused(Exception):
    """The file as a whole cannot be used: unreadable, not UTF-8, unknown or missing columns,
    no rows (exit 2)."""


@dataclass(frozen=True, slots=True)
class Problem:
    column: str | None
    """The data field (CSV column) the problem is about, when it is about one."""
    message: str

    def describe(self) -> str:
        return f"column {self.column}: {self.message}" if self.column else self.message


@dataclass(frozen=True, slots=True)
class Row:
    number: int
    """1-based among the data rows (blank lines and the header do not count): the event id's
    suffix and the report's ``row``."""
    line: int
    """The line of the file the row starts on."""
    data: dict[str, Any]
    problems: tuple[Problem, ...] = ()
    """What made its cells unreadable (a boolean that is none, a value under no column)."""


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileStats:
    digest: str
    """sha256 of the file's bytes."""
    lines: int


def file_stats(path: Path) -> FileStats:
    """Read in chunks, so a large file costs no memory."""
    digest = hashlib.sha256()
    lines = 0
    last = b"\n"
    try:
        with path.open("rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:]
    except OSError as error:
        raise RowsRefused(f"cannot read {path}: {error.strerror}") from None
    return FileStats(digest.hexdigest(), lines + (last != b"\n"))


class RowFile:
    """The rows of one file, read afresh by each call of ``rows()``."""

    def __init__(self, path: Path, kind: str, event_type: str) -> None:
        assert kind in (CSV, JSONL), kind
        self.path = path
        self.kind = kind
        self.event_type = event_type
        self.read_digest: str | None = None
        """sha256 of the bytes the last complete ``rows()`` pass read."""
        self._converters = cell_converters(event_type)

    def rows(self) -> Iterator[Row]:
        """Raises RowsRefused for what makes the whole file unusable, when it is met."""
        return self._csv_rows() if self.kind == CSV else self._jsonl_rows()

    def _lines(self) -> Iterator[str]:
        self.read_digest = None
        digest = hashlib.sha256()
        try:
            with self.path.open("rb") as file:
                for number, raw in enumerate(file, 1):
                    digest.update(raw)
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as error:
                        raise RowsRefused(
                            f"{self.path} line {number} is not UTF-8 text ({error.reason} at "
                            f"byte {error.start + 1}); save the sheet as CSV UTF-8"
                        ) from None
                    # The byte order mark spreadsheets put before the header.
                    yield text.removeprefix("\ufeff") if number == 1 else text
        except OSError as error:
            raise RowsRefused(f"cannot read {self.path}: {error.strerror}") from None
        self.read_digest = digest.hexdigest()

    def _csv_rows(self) -> Iterator[Row]:
        reader = csv.reader(self._lines())
        try:
            header = next(reader, None)
            if header is None or not any(name.strip() for name in header):
                raise RowsRefused(f"{self.path} has no header line naming its columns")
            columns = self._columns(header)
            ended = reader.line_num
            number = 0
            for cells in reader:
                line, ended = ended + 1, reader.line_num
                if not any(cell.strip() for cell in cells):
                    continue
                number += 1
                yield self._csv_row(number, line, columns, cells)
        except csv.Error as error:
            raise RowsRefused(f"{self.path} line {reader.line_num}: not CSV: {error}") from None

    def _columns(self, header: list[str]) -> list[str | None]:
        """The data field of each column (None for an unnamed one); refuses unknown,
        repeated and missing columns."""
        names = [name.strip() for name in header]
        known = DATA_MODELS[self.event_type].model_fields
        problems = []
        unknown = [name for name in names if name and name not in known]
        if unknown:
            elsewhere = data_fields()
            for name in unknown:
                if name in elsewhere:
                    types_ = ", ".join(elsewhere[name][1])
                    problems.append(f"column {name} is a field of {types_}, not {self.event_type}")
                else:
                    problems.append(f"unknown column {name!r}")
            problems.append(f"the columns of {self.event_type} are {', '.join(known)}")
        repeated = sorted({name for name in names if name and names.count(name) > 1})
        if repeated:
            problems.append(f"repeated column {', '.join(repeated)}")
        missing = [
            name for name, field in known.items() if field.is_required() and name not in names
        ]
        if missing:
            problems.append(f"missing column {', '.join(missing)} (required by {self.event_type})")
        if problems:
            raise RowsRefused(f"{self.path} line 1: " + "; ".join(problems))
        return [name or None for name in names]

    def _csv_row(self, number: int, line: int, columns: list[str | None], cells: list[str]) -> Row:
        data: dict[str, Any] = {}
        problems = []
        for index, cell in enumerate(cells):
            text = cell.strip()
            if not text:
                continue
            column = columns[index] if index < len(columns) else None
            if column is None:
                problems.append(
                    Problem(None, f"{_shown(text)} in column {index + 1}, which has no name")
                )
                continue
            try:
                data[column] = self._converters[column](text)
            except ValueError as error:
                problems.append(Problem(column, str(error)))
        return Row(number, line, data, tuple(problems))

    def _jsonl_rows(self) -> Iterator[Row]:
        number = 0
        for line, text in enumerate(self._lines(), 1):
            if not text.strip():
                continue
            number += 1
            try:
                document = json.loads(text)
            except json.JSONDecodeError as error:
                yield Row(number, line, {}, (Problem(None, f"not JSON: {error}"),))
                continue
            except RecursionError:
                yield Row(number, line, {}, (Problem(None, "not JSON: nested too deeply"),))
                continue
            if not isinstance(document, dict):
                problem = Problem(None, "not a JSON object of data fields")
                yield Row(number, line, {}, (problem,))
                continue
            yield Row(number, line, document)


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…")


# --- spreadsheet values --------------------------------------------------------------------------


def cell_converters(event_type: str) -> dict[str, Callable[[str], Any]]:
    """Per data field of ``event_type``: a cell's text -> the JSON value; ValueError says
    why a cell cannot be one."""
    return {
        name: _converter(value_type(field.annotation))
        for name, field in DATA_MODELS[event_type].model_fields.items()
    }


def _converter(kind: Any) -> Callable[[str], Any]:
    if kind is bool:
        return parse_boolean
    if kind is int:
        return parse_whole_number
    if get_origin(kind) is list:
        return parse_list
    if get_origin(kind) is dict:
        return parse_object
    # Text, choices (Literal) and dates (YYYY-MM-DD) are JSON strings, as is anything else:
    # the parser judges them.
    return str


def parse_boolean(text: str) -> bool:
    folded = text.casefold()
    if folded in _TRUE:
        return True
    if folded in _FALSE:
        return False
    raise ValueError(f"{_shown(text)} is not a boolean: use TRUE/FALSE, yes/no or 1/0")


def parse_whole_number(text: str) -> int:
    if _WHOLE_NUMBER.fullmatch(text) is None:
        raise ValueError(f"{_shown(text)} is not a whole number")
    return int(text.split(".", 1)[0])


def parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(LIST_SEPARATOR) if item.strip()]


def parse_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError(f"{_shown(text)} is not a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError(f"{_shown(text)} is not a JSON object")
    return value


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchIds:
    """Row n of a batch is the event ``<name>-<n>``: sending a file again sends the same ids,
    so the service derives the same Zuora Idempotency-Keys."""

    name: str

    def event_id(self, number: int) -> str:
        return f"{self.name}-{number}"

    def row_of(self, event_id: str) -> int | None:
        suffix = event_id.removeprefix(f"{self.name}-")
        if suffix == event_id or not suffix.isascii() or not suffix.isdigit():
            return None
        return None if suffix.startswith("0") else int(suffix)


def default_batch_name(digest: str) -> str:
    return f"batch-{digest[:12]}"


def check_batch_name(name: str) -> str:
    if _BATCH_NAME.fullmatch(name) is None:
        raise RowsRefused(
            f"--batch {name!r}: use 1 to 200 letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True, slots=True)
class CheckedRow:
    row: Row
    event_id: str
    value: bytes | None
    """The event's bytes, exactly as validated; None when invalid."""
    key: bytes | None
    """Its business object, the record key."""
    problems: tuple[Problem, ...] = ()

    @property
    def valid(self) -> bool:
        return self.value is not None

    def describe_problems(self, path: Path | str) -> list[str]:
        where = f"{path} line {self.row.line} (row {self.row.number})"
        return [
            f"{where}, {problem.describe()}" if problem.column else f"{where}: {problem.message}"
            for problem in self.problems
        ]


@dataclass(frozen=True, slots=True)
class RowChecker:
    """Builds each row's event as ``send`` builds one and validates it as the service does."""

    event_type: str
    ids: BatchIds
    source: str
    now: dt.datetime
    """One time for the whole batch."""
    max_event_bytes: int

    def check(self, row: Row) -> CheckedRow:
        event_id = self.ids.event_id(row.number)
        event = build_event(
            self.event_type, row.data, event_id=event_id, source=self.source, now=self.now
        )
        value = json.dumps(event).encode()
        parsed = parse_event(value, max_bytes=self.max_event_bytes)
        if isinstance(parsed, InvalidEvent):
            # Besides unreadable cells, what the parser says of the rest of the row (not of
            # the fields left out because their cells were unreadable).
            unread = {problem.column for problem in row.problems}
            found = [problem_of(text) for text in parsed.problems]
            problems = row.problems + tuple(p for p in found if p.column not in unread)
            return CheckedRow(row, event_id, None, None, problems)
        if row.problems:
            return CheckedRow(row, event_id, None, None, row.problems)
        return CheckedRow(row, event_id, value, plan(parsed).object_key.encode())

    def checked(self, rows: Iterable[Row]) -> Iterator[CheckedRow]:
        return (self.check(row) for row in rows)


def problem_of(text: str) -> Problem:
    """A parser problem, ``data.journalId: String should …``, as the column it is about and
    what is wrong; problems not about one field (``data: documentId or documentNumber is
    required``, the event's size) have no column."""
    location, separator, message = text.partition(": ")
    if not separator or not location.startswith("data."):
        return Problem(None, message if separator and location == "data" else text)
    field, *inner = location.removeprefix("data.").split(".")
    if inner:
        first = f"value {int(inner[0]) + 1}" if inner[0].isdigit() else inner[0]
        message = f"{'.'.join([first, *inner[1:]])}: {message}"
    return Problem(field, message)


# --- outcomes ------------------------------------------------------------------------------------


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NO_RESULT = "no_result"
    INVALID = "invalid"


UPSTREAM_ID_FIELDS = ("idList", "invoiceId", "invoiceIds", "creditMemoIds", "journalId")


def upstream_ids(upstream: Any) -> list[str]:
    """The ids of what the upstream regenerated or generated, from a result's
    ``data.upstream``."""
    if not isinstance(upstream, dict):
        return []
    ids: list[str] = []
    for name in UPSTREAM_ID_FIELDS:
        value = upstream.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | int) and not isinstance(item, bool) and str(item):
                ids.append(str(item))
    return ids


@dataclass(frozen=True, slots=True)
class ResultDetails:
    """What the report says of a row's result event."""

    succeeded: bool
    reason: str = ""
    message: str = ""
    attempts: int | None = None
    upstream_ids: tuple[str, ...] = ()

    @classmethod
    def of(cls, result: dict[str, Any], *, succeeded: bool) -> ResultDetails:
        data = result.get("data")
        data = data if isinstance(data, dict) else {}
        attempts = data.get("attempts")
        return cls(
            succeeded=succeeded,
            reason="" if succeeded else str(data.get("reason") or ""),
            message="" if succeeded else str(data.get("message") or ""),
            attempts=attempts if isinstance(attempts, int) else None,
            upstream_ids=tuple(upstream_ids(data.get("upstream"))) if succeeded else (),
        )

    def to_json(self) -> bytes:
        return json.dumps(
            [self.succeeded, self.reason, self.message, self.attempts, self.upstream_ids]
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ResultDetails:
        succeeded, reason, message, attempts, ids = json.loads(raw)
        return cls(succeeded, reason, message, attempts, tuple(ids))


@dataclass(frozen=True, slots=True)
class ReportRow:
    row: int
    event_id: str
    outcome: Outcome
    reason: str = ""
    message: str = ""
    attempts: int | None = None
    upstream_ids: tuple[str, ...] = ()
    dead_lettered: bool = False

    def cells(self) -> list[str]:
        return [
            str(self.row),
            self.event_id,
            self.outcome.value,
            self.reason,
            self.message,
            "" if self.attempts is None else str(self.attempts),
            LIST_SEPARATOR.join(self.upstream_ids),
            "yes" if self.dead_lettered else "no",
        ]


REPORT_COLUMNS = [
    "row",
    "eventId",
    "outcome",
    "reason",
    "message",
    "attempts",
    "upstreamIds",
    "deadLettered",
]

# One byte per row: its state, and whether its dead letter was seen.
_PENDING, _INVALID, _SENT, _SUCCEEDED, _FAILED = range(5)
_DEAD_LETTERED = 0x80
_STATE = 0x7F


class RowOutcomes:
    """What became of each row of a batch, compactly: one byte per row, and for rows with
    details (a result, or an invalid row's problems) the position of those in a spool file.
    100,000 rows take under a megabyte of memory."""

    def __init__(self) -> None:
        self._states = bytearray()
        self._offsets = array("q")
        self._spool: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._end = 0
        self.sent = 0
        self.results = 0
        self.waiting = 0
        """Rows sent whose result has not been seen."""
        self.succeeded = 0
        self.failed = 0
        self.dead_lettered_failures = 0

    def close(self) -> None:
        self._spool.close()

    def __len__(self) -> int:
        return len(self._states)

    def add(self, problems: str | None = None) -> int:
        """The next row, invalid when it has problems; returns its number."""
        self._states.append(_PENDING if problems is None else _INVALID)
        self._offsets.append(-1 if problems is None else self._write(problems.encode()))
        return len(self._states)

    def _write(self, raw: bytes) -> int:
        offset = self._end
        self._spool.seek(offset)
        self._spool.write(raw + b"\n")
        self._end += len(raw) + 1
        return offset

    def _read(self, offset: int) -> bytes:
        self._spool.seek(offset)
        return self._spool.readline().rstrip(b"\n")

    def _state(self, number: int) -> int:
        return self._states[number - 1] & _STATE

    def expects(self, number: int) -> bool:
        """Whether a result for row ``number`` is still of interest."""
        return 1 <= number <= len(self._states) and self._state(number) in (_PENDING, _SENT)

    def mark_sent(self, number: int) -> None:
        self.sent += 1
        if 1 <= number <= len(self._states) and self._state(number) == _PENDING:
            self._set_state(number, _SENT)
            self.waiting += 1

    def record_result(self, number: int, details: ResultDetails) -> bool:
        """The row's first result; False when it has one already or is not a row awaited."""
        if not self.expects(number):
            return False
        if self._state(number) == _SENT:
            self.waiting -= 1
        self.results += 1
        if details.succeeded:
            self.succeeded += 1
        else:
            self.failed += 1
            if self.is_dead_lettered(number):
                self.dead_lettered_failures += 1
        self._set_state(number, _SUCCEEDED if details.succeeded else _FAILED)
        self._offsets[number - 1] = self._write(details.to_json())
        return True

    def mark_dead_lettered(self, number: int) -> None:
        if not 1 <= number <= len(self._states) or self.is_dead_lettered(number):
            return
        self._states[number - 1] |= _DEAD_LETTERED
        if self._state(number) == _FAILED:
            self.dead_lettered_failures += 1

    def is_dead_lettered(self, number: int) -> bool:
        return bool(self._states[number - 1] & _DEAD_LETTERED)

    def _set_state(self, number: int, state: int) -> None:
        self._states[number - 1] = (self._states[number - 1] & _DEAD_LETTERED) | state

    @property
    def invalid(self) -> int:
        return sum(1 for state in self._states if state & _STATE == _INVALID)

    def failed_rows(self) -> Iterator[int]:
        return (n for n in range(1, len(self._states) + 1) if self._state(n) == _FAILED)

    def report_row(self, number: int, ids: BatchIds, *, no_result: str, not_sent: str) -> ReportRow:
        event_id = ids.event_id(number)
        state = self._state(number)
        dead_lettered = self.is_dead_lettered(number)
        if state == _INVALID:
            message = self._read(self._offsets[number - 1]).decode()
            return ReportRow(number, event_id, Outcome.INVALID, message=message)
        if state in (_PENDING, _SENT):
            message = not_sent if state == _PENDING else no_result
            return ReportRow(
                number, event_id, Outcome.NO_RESULT, message=message, dead_lettered=dead_lettered
            )
        details = ResultDetails.from_json(self._read(self._offsets[number - 1]))
        return ReportRow(
            number,
            event_id,
            Outcome.SUCCEEDED if details.succeeded else Outcome.FAILED,
            details.reason,
            details.message,
            details.attempts,
            details.upstream_ids,
            dead_lettered,
        )

    def report_rows(self, ids: BatchIds, *, no_result: str, not_sent: str) -> Iterator[ReportRow]:
        for number in range(1, len(self._states) + 1):
            yield self.report_row(number, ids, no_result=no_result, not_sent=not_sent)


def write_report(path: Path, rows: Iterable[ReportRow]) -> int:
    """Writes the report as CSV (UTF-8, no byte order mark), whole or not at all; returns the
    number of rows written."""
    written = 0
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(REPORT_COLUMNS)
            for row in rows:
                writer.writerow(row.cells())
                written += 1
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)
    return written


def check_report_path(path: Path) -> None:
    """Refuses a report that could not be written, before anything is sent."""
    if path.is_dir():
        raise RowsRefused(f"--report {path} is a directory")
    directory = path.parent
    if not directory.is_dir():
        raise RowsRefused(f"--report {path}: no directory {directory}")
    if not os.access(directory, os.W_OK):
        raise RowsRefused(f"--report {path}: cannot write in {directory}")


# --- re-driving from a report --------------------------------------------------------------------


def report_event_ids(path: Path) -> frozenset[str]:
    """The event ids to re-drive from a report (or any CSV with an ``eventId`` column): with
    an ``outcome`` column, only those of rows whose outcome is ``failed``."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            reader = csv.reader(file)
            header = [name.strip() for name in next(reader, [])]
            if "eventId" not in header:
                raise RowsRefused(f"{path} has no eventId column")
            id_column = header.index("eventId")
            outcome_column = header.index("outcome") if "outcome" in header else None
            ids = set()
            for cells in reader:
                if id_column >= len(cells) or not (event_id := cells[id_column].strip()):
                    continue
                if outcome_column is not None and (
                    outcome_column >= len(cells) or cells[outcome_column].strip() != Outcome.FAILED
                ):
                    continue
                ids.add(event_id)
    except OSError as error:
        raise RowsRefused(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise RowsRefused(f"{path} is not UTF-8 text") from None
    except csv.Error as error:
        raise RowsRefused(f"{path}: not CSV: {error}") from None
    return frozenset(ids)
