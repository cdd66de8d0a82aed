"""The pure parts of `regen-sync redrive`: reading a dead letter's headers and event, the
filters, choosing the latest dead letter of each event, the headers sent, the arguments."""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

from regen_sync.kafka.publishing import (
    DLQ_FAILED_AT,
    DLQ_MESSAGE,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    DLQ_TRUNCATED_FROM,
)
from regen_sync.operator import add_operator_commands
from regen_sync.operator.redrive import _options, redrive_command
from regen_sync.operator.redrive_selection import (
    REDRIVEN_FROM,
    Choice,
    DeadLetter,
    Scan,
    Selection,
    Verdict,
    as_utc,
    choose,
    read_dead_letter,
    redriven_headers,
    summary_notes,
)
from regen_sync.operator.settings import load_kafka_client_settings
from regen_sync.processing import REDRIVE_HEADER

FAILED_AT = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
RECORD_TIME = dt.datetime(2026, 11, 21, 9, 0, tzinfo=dt.UTC)
EVENT = {"specversion": "1.0", "id": "fix-1", "source": "urn:billing", "type": "booking.fixed"}


def dead_letter_headers(reason: str = "retries_exhausted") -> list[tuple[str, bytes]]:
    """What KafkaResultSink.dead_letter adds to the input record's headers."""
    return [
        (DLQ_REASON, reason.encode()),
        (DLQ_MESSAGE, b"upstream answered HTTP 503"),
        (DLQ_ORIGINAL_TOPIC, b"billing.data-fixed"),
        (DLQ_ORIGINAL_PARTITION, b"2"),
        (DLQ_ORIGINAL_OFFSET, b"41"),
        (DLQ_FAILED_AT, FAILED_AT.isoformat().encode()),
    ]


def record(
    value: bytes | None = json.dumps(EVENT).encode(),
    headers: list[tuple[str, bytes]] | None = None,
    *,
    partition: int = 1,
    offset: int = 7,
) -> ConsumerRecord[bytes, bytes]:
    headers = dead_letter_headers() if headers is None else headers
    return ConsumerRecord(
        topic="regen-sync.dead-letter",
        partition=partition,
        offset=offset,
        timestamp=int(RECORD_TIME.timestamp() * 1000),
        timestamp_type=0,
        key=b"Subscription:name=A-S1",
        value=value,
        checksum=None,
        serialized_key_size=22,
        serialized_value_size=len(value or b""),
        headers=headers,
    )


def dead_letter(
    event_id: str | None = "fix-1",
    *,
    reason: str | None = "retries_exhausted",
    minute: int = 0,
    partition: int = 0,
    offset: int = 0,
    source: str | None = "urn:billing",
    truncated: bool = False,
) -> DeadLetter:
    return DeadLetter(
        topic="dlq",
        partition=partition,
        offset=offset,
        reason=reason,
        failed_at=FAILED_AT + dt.timedelta(minutes=minute),
        event_id=event_id,
        source=source,
        event_type="booking.fixed",
        truncated=truncated,
    )


# --- reading a dead letter -----------------------------------------------------------------------


def test_a_dead_letter_is_read_from_its_headers_and_its_event() -> None:
    read = read_dead_letter(record())

    assert read == DeadLetter(
        topic="regen-sync.dead-letter",
        partition=1,
        offset=7,
        reason="retries_exhausted",
        failed_at=FAILED_AT,
        event_id="fix-1",
        source="urn:billing",
        event_type="booking.fixed",
    )
    assert read.origin == "regen-sync.dead-letter/1/7"
    assert read.describe() == (
        "regen-sync.dead-letter/1/7 id=fix-1 type=booking.fixed reason=retries_exhausted "
        "failed-at=2026-11-21T10:00:00+00:00"
    )


@pytest.mark.parametrize(
    "value",
    [b"{not json", b"\xff\xfe", b'["an", "array"]', b'{"id": 42, "type": ""}', b"", None],
    ids=["broken JSON", "not UTF-8", "not an object", "no text attributes", "empty", "null"],
)
def test_an_unreadable_value_has_no_event_but_keeps_its_reason(value: bytes | None) -> None:
    read = read_dead_letter(record(value))

    assert (read.event_id, read.source, read.event_type) == (None, None, None)
    assert read.reason == "retries_exhausted"
    assert "id=(none) type=(none)" in read.describe()


@pytest.mark.parametrize("failed_at", [None, b"yesterday"], ids=["missing", "unreadable"])
def test_without_a_readable_failed_at_the_record_timestamp_counts(failed_at: bytes | None) -> None:
    headers = [(DLQ_REASON, b"rejected")]
    if failed_at is not None:
        headers.append((DLQ_FAILED_AT, failed_at))

    assert read_dead_letter(record(headers=headers)).failed_at == RECORD_TIME


def test_a_failed_at_without_offset_is_utc_and_other_offsets_are_kept() -> None:
    naive = [(DLQ_REASON, b"rejected"), (DLQ_FAILED_AT, b"2026-11-21T10:00:00")]
    shifted = [(DLQ_REASON, b"rejected"), (DLQ_FAILED_AT, b"2026-11-21T11:00:00+01:00")]

    assert read_dead_letter(record(headers=naive)).failed_at == FAILED_AT
    assert read_dead_letter(record(headers=shifted)).failed_at == FAILED_AT
    assert as_utc(dt.datetime(2026, 11, 21, 10)) == FAILED_AT


def test_the_last_reason_is_the_one_regen_sync_added() -> None:
    # A record re-published with a dead letter's headers, and dead-lettered again.
    headers = [*dead_letter_headers("rejected"), *dead_letter_headers("internal_error")]

    assert read_dead_letter(record(headers=headers)).reason == "internal_error"


def test_a_record_without_a_reason_and_a_truncated_one_are_recognised() -> None:
    assert read_dead_letter(record(headers=[("traceparent", b"00-ab")])).reason is None
    truncated = [*dead_letter_headers(), (DLQ_TRUNCATED_FROM, b"2000000")]
    assert read_dead_letter(record(headers=truncated)).truncated
    assert not read_dead_letter(record()).truncated


# --- headers sent --------------------------------------------------------------------------------


def test_republished_headers_are_the_inputs_own_plus_where_it_came_from() -> None:
    own = [("traceparent", b"00-ab"), ("content-type", b"application/json"), ("x", b"1")]
    earlier = [(REDRIVEN_FROM, b"dlq/0/3")]
    headers = [*own[:2], *earlier, own[2], ("x", b"2"), *dead_letter_headers()]

    sent = redriven_headers(headers, "dlq/1/7")

    assert sent == [*own, ("x", b"2"), (REDRIVEN_FROM, b"dlq/1/7"), (REDRIVE_HEADER, b"1")]


def test_each_redrive_of_an_event_counts_one_more_so_its_keys_are_new() -> None:
    once = redriven_headers([("traceparent", b"00-ab")], "dlq/0/3")
    # It failed again: its dead letter carries the re-driven record's headers.
    twice = redriven_headers([*once, *dead_letter_headers()], "dlq/0/9")
    assert dict(once)[REDRIVE_HEADER] == b"1"
    assert dict(twice)[REDRIVE_HEADER] == b"2"
    assert [name for name, _ in twice].count(REDRIVE_HEADER) == 1


def test_header_names_are_matched_exactly() -> None:
    # Kafka header names are case-sensitive: only regen-sync's own lower-case ones go.
    headers = [("Regen-Error-Reason", b"mine"), ("regenerate", b"also mine")]

    assert redriven_headers(headers, "dlq/0/0")[:2] == headers


# --- filters -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selection", "letter", "verdict"),
    [
        (Selection(), dead_letter(), Verdict.MATCHING),
        (Selection(), dead_letter(reason="invalid_event"), Verdict.HELD_BACK),
        (Selection(reasons=frozenset({"invalid_event"})), dead_letter(reason="invalid_event"),
         Verdict.MATCHING),
        (Selection(reasons=frozenset({"rejected"})), dead_letter(), Verdict.NOT_MATCHING),
        (Selection(reasons=frozenset({"rejected", "retries_exhausted"})), dead_letter(),
         Verdict.MATCHING),
        (Selection(since=FAILED_AT), dead_letter(), Verdict.MATCHING),
        (Selection(since=FAILED_AT), dead_letter(minute=-1), Verdict.NOT_MATCHING),
        (Selection(until=FAILED_AT), dead_letter(), Verdict.NOT_MATCHING),
        (Selection(until=FAILED_AT), dead_letter(minute=-1), Verdict.MATCHING),
        (Selection(event_ids=frozenset({"fix-1", "fix-2"})), dead_letter(), Verdict.MATCHING),
        (Selection(event_ids=frozenset({"fix-2"})), dead_letter(), Verdict.NOT_MATCHING),
        (Selection(event_ids=frozenset({"fix-1"})), dead_letter(None), Verdict.NOT_MATCHING),
        (Selection(event_ids=frozenset({"fix-1"})), dead_letter(reason="invalid_event"),
         Verdict.HELD_BACK),
        (Selection(), dead_letter(reason=None), Verdict.UNRECOGNISED),
        (Selection(reasons=frozenset({"rejected"})), dead_letter(reason=None),
         Verdict.UNRECOGNISED),
        (Selection(), dead_letter(truncated=True), Verdict.TRUNCATED),
        (Selection(reasons=frozenset({"invalid_event"})),
         dead_letter(reason="invalid_event", truncated=True), Verdict.TRUNCATED),
        (Selection(reasons=frozenset({"rejected"})), dead_letter(truncated=True),
         Verdict.NOT_MATCHING),
    ],
)  # fmt: skip
def test_filter_verdicts(selection: Selection, letter: DeadLetter, verdict: Verdict) -> None:
    assert selection.verdict(letter) is verdict


def test_filters_combine() -> None:
    selection = Selection(
        reasons=frozenset({"retries_exhausted"}),
        since=FAILED_AT,
        until=FAILED_AT + dt.timedelta(minutes=10),
        event_ids=frozenset({"fix-1"}),
    )

    assert selection.verdict(dead_letter(minute=5)) is Verdict.MATCHING
    for other in [
        dead_letter(minute=10),
        dead_letter(minute=-1),
        dead_letter("fix-2", minute=5),
        dead_letter(reason="rejected", minute=5),
    ]:
        assert selection.verdict(other) is Verdict.NOT_MATCHING, other


# --- choosing ------------------------------------------------------------------------------------


def test_only_the_latest_dead_letter_of_an_event_is_chosen_oldest_failure_first() -> None:
    first = dead_letter("fix-1", minute=1, offset=0)
    other = dead_letter("fix-2", minute=2, offset=1)
    again = dead_letter("fix-1", minute=3, offset=2)

    choice = choose([again, first, other], limit=None)

    assert choice == Choice([other, again], superseded=1, over_limit=0)


def test_the_same_id_from_another_source_is_another_event() -> None:
    ours = dead_letter("fix-1", minute=1)
    theirs = dead_letter("fix-1", minute=2, offset=1, source="urn:elsewhere")

    assert choose([ours, theirs], limit=None).chosen == [ours, theirs]


def test_records_without_an_event_id_are_never_merged() -> None:
    one = dead_letter(None, minute=1, offset=0)
    two = dead_letter(None, minute=1, offset=1)

    assert choose([two, one], limit=None) == Choice([one, two], superseded=0, over_limit=0)


def test_a_limit_keeps_the_oldest_failures_after_merging() -> None:
    letters = [dead_letter(f"fix-{n}", minute=10 - n, offset=n) for n in range(5)]
    letters.append(dead_letter("fix-4", minute=20, offset=5))

    choice = choose(letters, limit=2)

    assert [letter.event_id for letter in choice.chosen] == ["fix-3", "fix-2"]
    assert (choice.superseded, choice.over_limit) == (1, 3)


def test_a_scan_keeps_the_matching_dead_letters_in_order_and_counts_every_verdict() -> None:
    invalid = json.dumps({**EVENT, "id": "fix-2"}).encode()
    scan = Scan(Selection())

    scan.add([record(offset=1), record(headers=[], offset=2)])
    scan.add([record(invalid, dead_letter_headers("invalid_event"), offset=3), record(offset=4)])

    assert scan.scanned == 4
    assert [(letter.offset, letter.event_id) for letter in scan.matching] == [
        (1, "fix-1"),
        (4, "fix-1"),
    ]
    assert scan.verdicts == {Verdict.MATCHING: 2, Verdict.UNRECOGNISED: 1, Verdict.HELD_BACK: 1}
    assert choose(scan.matching, limit=None).chosen == [scan.matching[-1]]


def test_notes_say_why_matching_dead_letters_were_not_selected() -> None:
    verdicts = collections.Counter(
        {Verdict.HELD_BACK: 2, Verdict.UNRECOGNISED: 1, Verdict.TRUNCATED: 1, Verdict.MATCHING: 9}
    )

    selection = Selection(event_ids=frozenset({"fix-1", "fix-3", "fix-2"}))
    chosen = [dead_letter("fix-1")]

    notes = summary_notes(verdicts, Choice(chosen, superseded=1, over_limit=3), selection, 5)

    assert notes == [
        "held back 2 invalid_event dead letters (sent unchanged, an invalid event fails "
        "again): add --reason invalid_event to re-drive anyway",
        "ignored 1 record without a regen-error-reason header: not a dead letter written by "
        "regen-sync",
        "skipped 1 truncated dead letter (regen-truncated-from-bytes): the whole record is on "
        "the topic named in its regen-original-* headers",
        "skipped 1 older dead letter of an event dead-lettered again: only the latest of each "
        "event is re-driven",
        "left 3 more dead letters for later (--limit 5)",
        "no dead letter selected for event id fix-2, fix-3",
    ]
    matching = collections.Counter({Verdict.MATCHING: 3})
    quiet = summary_notes(matching, Choice([], 0, 0), Selection(), None)
    assert quiet == []


# --- arguments -----------------------------------------------------------------------------------


def redrive(*arguments: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="regen-sync")
    add_operator_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["redrive", *arguments])


def test_defaults_select_everything_but_invalid_events_and_send_to_the_input_topic() -> None:
    arguments = redrive()

    assert (arguments.reason, arguments.event_id, arguments.since, arguments.until) == (
        None,
        None,
        None,
        None,
    )
    assert (arguments.to, arguments.limit, arguments.dry_run) == (None, None, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-21T10:00:00Z", FAILED_AT),
        ("2026-11-21T11:00:00+01:00", FAILED_AT),
        ("2026-11-21T10:00:00.250000+00:00", FAILED_AT + dt.timedelta(milliseconds=250)),
        ("2026-11-21", dt.datetime(2026, 11, 21)),
    ],
)
def test_times_are_iso_8601(text: str, expected: dt.datetime) -> None:
    assert redrive("--since", text).since == expected


@pytest.mark.parametrize(
    "flags",
    [
        ["--since", "yesterday"],
        ["--until", "21.11.2026"],
        ["--reason", "timeout"],
        ["--limit", "0"],
        ["--timeout", "0"],
    ],
)
def test_bad_arguments_exit_2(flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        redrive(*flags)

    assert exit_.value.code == 2
    assert f"argument {flags[0]}" in capsys.readouterr().err


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [name for name in os.environ if name.startswith("REGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGEN_SECRETS_DIR", "/nonexistent")
    return monkeypatch


@pytest.fixture
def unreachable_kafka(no_settings: pytest.MonkeyPatch) -> None:
    """Refusals must come before any connection: nothing listens on port 9 here."""
    no_settings.setenv("REGEN_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")


@pytest.mark.usefixtures("unreachable_kafka")
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--since", "2026-11-21T10:00:00Z", "--until", "2026-11-21T11:00:00+01:00"],
            "--since must be earlier than --until",
        ),
        # A naive time is UTC, so these two are the same instant.
        (
            ["--since", "2026-11-21T10:00:00", "--until", "2026-11-21T10:00:00Z"],
            "--since must be earlier than --until",
        ),
        (["--to", "regen-sync.failed"], "--to regen-sync.failed is one of regen-sync's output"),
        (["--to", "regen-sync.dead-letter"], "--to regen-sync.dead-letter is one of"),
    ],
)
def test_contradictory_arguments_are_refused_before_connecting(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert redrive_command(redrive(*flags)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("no_settings")
def test_missing_kafka_settings_exit_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert redrive_command(redrive("--dry-run")) == 2
    assert "REGEN_KAFKA__BOOTSTRAP_SERVERS: Field required" in capsys.readouterr().err


# --- --csv: the failed rows of a `send --report` -------------------------------------------------


def write_report_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["row,eventId,outcome,reason"]
    lines += [f"{n},{event_id},{outcome}," for n, (event_id, outcome) in enumerate(rows, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.usefixtures("unreachable_kafka")
def test_csv_selects_the_failed_rows_like_repeated_event_ids(tmp_path: Path) -> None:
    report = write_report_csv(
        tmp_path / "report.csv",
        [("b-1", "succeeded"), ("b-2", "failed"), ("b-3", "no_result"), ("b-4", "failed")],
    )
    arguments = redrive("--csv", str(report), "--event-id", "other-1", "--reason", "not_found")

    options = _options(arguments, load_kafka_client_settings())

    assert options.selection == Selection(
        reasons=frozenset({"not_found"}), event_ids=frozenset({"b-2", "b-4", "other-1"})
    )


@pytest.mark.usefixtures("unreachable_kafka")
def test_a_csv_without_failed_rows_redrives_nothing_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = write_report_csv(tmp_path / "report.csv", [("b-1", "succeeded")])

    assert redrive_command(redrive("--csv", str(report))) == 0

    out = capsys.readouterr().out
    assert f"--csv {report} lists no event id" in out
    assert "nothing re-driven" in out


@pytest.mark.usefixtures("unreachable_kafka")
def test_a_csv_without_an_event_id_column_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ids.csv"
    path.write_text("id\nb-1\n")

    assert redrive_command(redrive("--csv", str(path))) == 2
    assert "--csv: " in capsys.readouterr().err


def test_a_long_list_of_absent_event_ids_is_cut() -> None:
    selection = Selection(event_ids=frozenset(f"b-{n:02d}" for n in range(25)))

    [note] = summary_notes(collections.Counter(), Choice([], 0, 0), selection, None)

    assert note == (
        "no dead letter selected for event id "
        + ", ".join(f"b-{n:02d}" for n in range(20))
        + " and 5 more"
    )
