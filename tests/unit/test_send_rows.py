"""`regen-sync send --csv / --jsonl` without Kafka: reading rows, spreadsheet values, columns,
validation with line and column, event ids, what is kept per row, and the report."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from regen_sync.domain import parse_event
from regen_sync.operator import add_operator_commands
from regen_sync.operator.rows import (
    CSV,
    JSONL,
    REPORT_COLUMNS,
    BatchIds,
    CheckedRow,
    Outcome,
    Problem,
    ReportRow,
    ResultDetails,
    Row,
    RowChecker,
    RowFile,
    RowOutcomes,
    RowsRefused,
    check_batch_name,
    default_batch_name,
    file_stats,
    parse_boolean,
    parse_list,
    parse_object,
    parse_whole_number,
    problem_of,
    report_event_ids,
    upstream_ids,
    write_report,
)
from regen_sync.operator.send import send_command

NOW = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
MAX_BYTES = 1024 * 1024
IDS = BatchIds("fix-1121")


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def rows(path: Path, event_type: str, kind: str = CSV) -> list[Row]:
    return list(RowFile(path, kind, event_type).rows())


def checker(event_type: str, **overrides: Any) -> RowChecker:
    options: dict[str, Any] = {
        "ids": IDS,
        "source": "urn:test",
        "now": NOW,
        "max_event_bytes": MAX_BYTES,
    } | overrides
    return RowChecker(event_type, **options)


def checked(path: Path, event_type: str, kind: str = CSV, **overrides: Any) -> list[CheckedRow]:
    return list(checker(event_type, **overrides).checked(RowFile(path, kind, event_type).rows()))


# --- spreadsheet values --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("TRUE", True),
        ("true", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("YES", True),
        ("FALSE", False),
        ("false", False),
        ("0", False),
        ("no", False),
        ("No", False),
    ],
)
def test_booleans_as_spreadsheets_write_them(text: str, value: bool) -> None:
    assert parse_boolean(text) is value


@pytest.mark.parametrize("text", ["maybe", "2", "t", "on", "1.0"])
def test_other_booleans_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=f"'{text}' is not a boolean: use TRUE/FALSE"):
        parse_boolean(text)


@pytest.mark.parametrize(
    ("text", "value"), [("2", 2), ("2.0", 2), ("2.", 2), ("+3", 3), ("-1", -1)]
)
def test_whole_numbers(text: str, value: int) -> None:
    assert parse_whole_number(text) == value


@pytest.mark.parametrize("text", ["2.5", "two", "1e3", "1,000", "inf"])
def test_other_numbers_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a whole number"):
        parse_whole_number(text)


def test_lists_are_semicolon_separated_and_empty_items_dropped() -> None:
    assert parse_list("org-1; org-2;;org-3 ;") == ["org-1", "org-2", "org-3"]
    assert parse_list("only") == ["only"]


def test_an_object_field_is_a_json_object() -> None:
    assert parse_object('{"notes": "fixed"}') == {"notes": "fixed"}
    for text in ["[1]", "{broken", '"text"']:
        with pytest.raises(ValueError, match="is not a JSON object"):
            parse_object(text)


# --- reading CSV ---------------------------------------------------------------------------------


def test_csv_cells_become_typed_data_and_empty_cells_are_absent(tmp_path: Path) -> None:
    path = write(
        tmp_path / "booking.csv",
        "objectType,subscriptionName,subscriptionVersion,onlyReSend,orgIds,entityId\n"
        "Subscription,A-S1,2.0,TRUE,org-1;org-2,\n"
        "Subscription, A-S2 ,3,no,,\n",
    )

    assert [row.data for row in rows(path, "booking.fixed")] == [
        {
            "objectType": "Subscription",
            "subscriptionName": "A-S1",
            "subscriptionVersion": 2,
            "onlyReSend": True,
            "orgIds": ["org-1", "org-2"],
        },
        {
            "objectType": "Subscription",
            "subscriptionName": "A-S2",
            "subscriptionVersion": 3,
            "onlyReSend": False,
        },
    ]


def test_a_byte_order_mark_and_windows_line_ends_are_read(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b'\xef\xbb\xbf journalId ,journal\r\nBJO-1,\r\nBJO-2,"{""a"": 1}"\r\n')

    assert [row.data for row in rows(path, "journal.fixed")] == [
        {"journalId": "BJO-1"},
        {"journalId": "BJO-2", "journal": {"a": 1}},
    ]


def test_rows_are_numbered_without_blank_lines_and_keep_their_first_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "journals.csv",
        'journalId,journal\nBJO-1,\n\n,\nBJO-2,"{""note"":\n""two lines""}"\nBJO-3,\n',
    )

    read = rows(path, "journal.fixed")

    assert [(row.number, row.line, row.data["journalId"]) for row in read] == [
        (1, 2, "BJO-1"),
        (2, 5, "BJO-2"),
        (3, 7, "BJO-3"),
    ]
    assert read[1].data["journal"] == {"note": "two lines"}


def test_unreadable_cells_are_row_problems_naming_the_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "documents.csv",
        "documentType,documentNumber,onlyReSend,\n"
        "Invoice,INV-1,maybe,\n"
        "Invoice,INV-2,,stray\n"
        "Invoice,INV-3,,,extra\n",
    )

    problems = [row.problems for row in rows(path, "billing.document.fixed")]

    assert problems == [
        (Problem("onlyReSend", "'maybe' is not a boolean: use TRUE/FALSE, yes/no or 1/0"),),
        (Problem(None, "'stray' in column 4, which has no name"),),
        (Problem(None, "'extra' in column 5, which has no name"),),
    ]


def test_unknown_columns_are_refused_naming_them_and_the_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path / "journals.csv", "journalId,journal_id,subscriptionIds\nBJO-1,,\n")

    with pytest.raises(RowsRefused) as refused:
        rows(path, "journal.fixed")

    assert str(refused.value) == (
        f"{path} line 1: unknown column 'journal_id'; column subscriptionIds is a field of "
        "account.charges.fixed, not journal.fixed; the columns of journal.fixed are "
        "journalId, journal"
    )


def test_repeated_and_missing_required_columns_are_refused(tmp_path: Path) -> None:
    repeated = write(tmp_path / "repeated.csv", "journalId,journalId\nBJO-1,BJO-2\n")
    missing = write(tmp_path / "missing.csv", "accountId,invoiceDate\nA-1,2026-11-01\n")

    with pytest.raises(RowsRefused, match="repeated column journalId"):
        rows(repeated, "journal.fixed")
    with pytest.raises(
        RowsRefused, match=r"missing column targetDate \(required by account.charges.fixed\)"
    ):
        rows(missing, "account.charges.fixed")


@pytest.mark.parametrize("content", [b"", b"\n", b" , \n"], ids=["empty", "blank", "no names"])
def test_a_file_without_a_header_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(RowsRefused, match="has no header line"):
        rows(path, "journal.fixed")


def test_a_file_that_is_not_utf8_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("journalId\nBJO-1\nBJÖ-2\n".encode("latin-1"))

    with pytest.raises(
        RowsRefused, match=r"line 3 is not UTF-8 text .* save the sheet as CSV UTF-8"
    ):
        rows(path, "journal.fixed")


def test_an_unreadable_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RowsRefused, match="cannot read"):
        rows(tmp_path / "missing.csv", "journal.fixed")
    with pytest.raises(RowsRefused, match="cannot read"):
        file_stats(tmp_path / "missing.csv")


def test_file_stats_count_lines_with_or_without_a_final_line_end(tmp_path: Path) -> None:
    assert file_stats(write(tmp_path / "a.csv", "a\nb\n")).lines == 2
    assert file_stats(write(tmp_path / "b.csv", "a\nb")).lines == 2
    assert file_stats(write(tmp_path / "c.csv", "")).lines == 0


# --- reading JSON Lines --------------------------------------------------------------------------


def test_jsonl_lines_are_data_objects_taken_as_they_are(tmp_path: Path) -> None:
    path = write(
        tmp_path / "rows.jsonl",
        '{"journalId": "BJO-1"}\n\n{"journalId": "BJO-2", "journal": {"a": [1]}}\n'
        '["not", "an", "object"]\n{broken\n',
    )

    read = rows(path, "journal.fixed", JSONL)

    assert [(row.number, row.line) for row in read] == [(1, 1), (2, 3), (3, 4), (4, 5)]
    assert read[1].data == {"journalId": "BJO-2", "journal": {"a": [1]}}
    assert read[2].problems == (Problem(None, "not a JSON object of data fields"),)
    assert read[3].problems[0].message.startswith("not JSON: Expecting property name")


# --- validation ----------------------------------------------------------------------------------


def test_valid_rows_become_the_events_the_service_accepts_keyed_by_object(tmp_path: Path) -> None:
    path = write(tmp_path / "journals.csv", "journalId\nBJO-1\nBJO-2\n")

    first, second = checked(path, "journal.fixed")

    assert first.valid
    assert (first.event_id, second.event_id) == ("fix-1121-1", "fix-1121-2")
    assert first.key == b"Journal:BJO-1"
    assert first.value is not None
    event = json.loads(first.value)
    assert event == {
        "specversion": "1.0",
        "id": "fix-1121-1",
        "source": "urn:test",
        "type": "journal.fixed",
        "time": NOW.isoformat(),
        "datacontenttype": "application/json",
        "data": {"journalId": "BJO-1"},
    }
    assert not isinstance(parse_event(first.value, max_bytes=MAX_BYTES), type(None))


def test_the_same_file_gives_the_same_ids_and_events(tmp_path: Path) -> None:
    path = write(tmp_path / "journals.csv", "journalId\nBJO-1\nBJO-2\n")

    assert checked(path, "journal.fixed") == checked(path, "journal.fixed")


def test_invalid_rows_say_line_column_and_the_parsers_problem(tmp_path: Path) -> None:
    path = write(
        tmp_path / "documents.csv",
        "documentType,documentNumber,onlyReSend,reMigrate,orgIds\n"
        "Invoice,INV-1,TRUE,,\n"
        "invoice,INV-2,maybe,,\n"
        "Invoice,,,,\n"
        "Invoice,INV-4,true,yes,\n",
    )

    described = [
        line
        for row in checked(path, "billing.document.fixed")
        for line in row.describe_problems("documents.csv")
    ]

    assert described == [
        "documents.csv line 3 (row 2), column onlyReSend: 'maybe' is not a boolean: use "
        "TRUE/FALSE, yes/no or 1/0",
        "documents.csv line 3 (row 2), column documentType: Input should be 'Invoice', "
        "'CreditMemo', 'DebitMemo' or 'InvoiceItemAdjustment'",
        "documents.csv line 4 (row 3): documentId or documentNumber is required",
        "documents.csv line 5 (row 4): onlyReSend and reMigrate cannot both be true",
    ]


def test_a_row_above_the_event_size_limit_is_invalid(tmp_path: Path) -> None:
    path = write(
        tmp_path / "journals.csv", 'journalId,journal\nBJO-1,"{""n"": ""' + "x" * 600 + '""}"\n'
    )

    [row] = checked(path, "journal.fixed", max_event_bytes=500)

    assert not row.valid
    assert row.problems[0].column is None
    assert "above the limit of 500" in row.problems[0].message


def test_jsonl_rows_are_validated_the_same_way(tmp_path: Path) -> None:
    path = write(tmp_path / "rows.jsonl", '{"journalId": "BJO 1", "extra": 1}\n')

    [row] = checked(path, "journal.fixed", JSONL)

    assert [problem.column for problem in row.problems] == ["journalId", "extra"]
    assert row.problems[1].message == "Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("data.journalId: String should match", Problem("journalId", "String should match")),
        (
            "data.orgIds.1: String should have at least 1 character",
            Problem("orgIds", "value 2: String should have at least 1 character"),
        ),
        ("data: documentId or documentNumber is required",
         Problem(None, "documentId or documentNumber is required")),
        ("id: String should have at most 255 characters",
         Problem(None, "id: String should have at most 255 characters")),
        ("the event is 9 bytes, above the limit of 8",
         Problem(None, "the event is 9 bytes, above the limit of 8")),
    ],
)  # fmt: skip
def test_parser_problems_are_mapped_to_columns(text: str, problem: Problem) -> None:
    assert problem_of(text) == problem


# --- ids -----------------------------------------------------------------------------------------


def test_row_n_is_batch_dash_n_and_back() -> None:
    ids = BatchIds("batch-0123456789ab")

    assert ids.event_id(7) == "batch-0123456789ab-7"
    assert ids.row_of("batch-0123456789ab-7") == 7
    others = ["batch-0123456789ab-07", "batch-0123456789ab-7-1", "batch-0123456789ab-"]
    others += ["other-7", "batch-0123456789ab-x", "batch-0123456789ab-\u0663"]
    for other in others:
        assert ids.row_of(other) is None, other


def test_the_default_batch_name_is_derived_from_the_file_content(tmp_path: Path) -> None:
    one = file_stats(write(tmp_path / "one.csv", "journalId\nBJO-1\n"))
    same = file_stats(write(tmp_path / "same.csv", "journalId\nBJO-1\n"))
    other = file_stats(write(tmp_path / "other.csv", "journalId\nBJO-2\n"))

    assert default_batch_name(one.digest) == default_batch_name(same.digest)
    assert default_batch_name(one.digest) != default_batch_name(other.digest)
    assert default_batch_name(one.digest) == f"batch-{one.digest[:12]}"


@pytest.mark.parametrize("name", ["fix-2026-11-21", "A", "ops.team:run_2"])
def test_batch_names(name: str) -> None:
    assert check_batch_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "has space", "x" * 201, "é"])
def test_bad_batch_names_are_refused(name: str) -> None:
    with pytest.raises(RowsRefused, match="--batch"):
        check_batch_name(name)


# --- outcomes and the report ---------------------------------------------------------------------


def result(event_type: str = "regeneration.succeeded", **data: Any) -> dict[str, Any]:
    return {"type": event_type, "data": {"attempts": 1} | data}


def test_upstream_ids_come_from_every_id_field() -> None:
    assert upstream_ids({"idList": ["a", "b"], "requestId": "r", "trackId": "t"}) == ["a", "b"]
    assert upstream_ids({"invoiceId": "INV-1"}) == ["INV-1"]
    assert upstream_ids({"invoiceIds": ["i1"], "creditMemoIds": ["c1", "c2"]}) == ["i1", "c1", "c2"]
    assert upstream_ids({"journalId": "BJO-1", "status": "Validating"}) == ["BJO-1"]
    assert upstream_ids({"idList": [None, True, ""], "invoiceId": None}) == []
    assert upstream_ids("not an object") == []


def test_result_details() -> None:
    succeeded = ResultDetails.of(result(upstream={"idList": ["x"]}), succeeded=True)
    failed = ResultDetails.of(
        result("regeneration.failed", reason="not_found", message="HTTP 404", attempts=2),
        succeeded=False,
    )

    assert succeeded == ResultDetails(True, attempts=1, upstream_ids=("x",))
    assert failed == ResultDetails(False, "not_found", "HTTP 404", 2)
    assert ResultDetails.from_json(failed.to_json()) == failed
    assert ResultDetails.of({"data": "odd"}, succeeded=False) == ResultDetails(False)


def test_each_row_ends_in_one_outcome_and_the_first_result_counts() -> None:
    outcomes = RowOutcomes()
    try:
        for problems in [None, None, "column journalId: bad", None, None, None]:
            outcomes.add(problems)
        for number in (1, 2, 4, 5):
            outcomes.mark_sent(number)
        succeeded = ResultDetails(True, attempts=1, upstream_ids=("BJO-1",))
        failed = ResultDetails(False, "not_found", "upstream answered HTTP 404", 1)
        assert outcomes.record_result(1, succeeded)
        outcomes.mark_dead_lettered(2)  # read before its result
        assert outcomes.record_result(2, failed)
        assert not outcomes.record_result(2, succeeded), "a redelivery's result"
        assert not outcomes.record_result(3, succeeded), "an invalid row was not sent"
        assert not outcomes.record_result(99, succeeded), "not a row"
        assert outcomes.record_result(4, failed)
        outcomes.mark_dead_lettered(4)  # read after its result

        assert (outcomes.sent, outcomes.results, outcomes.waiting) == (4, 3, 1)
        assert (outcomes.succeeded, outcomes.failed, outcomes.dead_lettered_failures) == (1, 2, 2)
        assert outcomes.invalid == 1
        assert list(outcomes.failed_rows()) == [2, 4]
        report = list(outcomes.report_rows(IDS, no_result="no result in 30 s", not_sent="not sent"))
    finally:
        outcomes.close()

    assert report == [
        ReportRow(1, "fix-1121-1", Outcome.SUCCEEDED, attempts=1, upstream_ids=("BJO-1",)),
        ReportRow(2, "fix-1121-2", Outcome.FAILED, "not_found", "upstream answered HTTP 404", 1,
                  dead_lettered=True),
        ReportRow(3, "fix-1121-3", Outcome.INVALID, message="column journalId: bad"),
        ReportRow(4, "fix-1121-4", Outcome.FAILED, "not_found", "upstream answered HTTP 404", 1,
                  dead_lettered=True),
        ReportRow(5, "fix-1121-5", Outcome.NO_RESULT, message="no result in 30 s"),
        ReportRow(6, "fix-1121-6", Outcome.NO_RESULT, message="not sent"),
    ]  # fmt: skip


def test_what_is_kept_per_row_is_compact() -> None:
    rows = 100_000
    tracemalloc.start()
    try:
        outcomes = RowOutcomes()
        for _ in range(rows):
            outcomes.add()
        for number in range(1, rows + 1):
            outcomes.mark_sent(number)
            details = ResultDetails(number % 7 != 0, "not_found", "HTTP 404", 1, (f"BJO-{number}",))
            outcomes.record_result(number, details)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    try:
        assert outcomes.results == rows
        assert outcomes.report_row(rows, IDS, no_result="", not_sent="").upstream_ids == (
            f"BJO-{rows}",
        )
    finally:
        outcomes.close()
    assert peak < 2 * 1024 * 1024, f"{peak / 1024 / 1024:.1f} MB for {rows} rows"


def test_the_report_is_csv_with_one_line_per_row(tmp_path: Path) -> None:
    path = tmp_path / "report.csv"

    written = write_report(
        path,
        [
            ReportRow(1, "b-1", Outcome.SUCCEEDED, attempts=1, upstream_ids=("i1", "c1")),
            ReportRow(2, "b-2", Outcome.FAILED, "rejected", 'said "no", twice', 6,
                      dead_lettered=True),
        ],
    )  # fmt: skip

    assert written == 2
    assert path.read_bytes().decode() == (
        "row,eventId,outcome,reason,message,attempts,upstreamIds,deadLettered\r\n"
        "1,b-1,succeeded,,,1,i1;c1,no\r\n"
        '2,b-2,failed,rejected,"said ""no"", twice",6,,yes\r\n'
    )
    assert path.read_text().splitlines()[0].split(",") == REPORT_COLUMNS
    assert sorted(os.listdir(tmp_path)) == ["report.csv"], "no temporary file left"


def test_redrive_takes_the_failed_rows_of_a_report_or_every_listed_id(tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    write_report(
        report,
        [
            ReportRow(1, "b-1", Outcome.SUCCEEDED),
            ReportRow(2, "b-2", Outcome.FAILED, "not_found"),
            ReportRow(3, "b-3", Outcome.NO_RESULT),
            ReportRow(4, "b-4", Outcome.INVALID),
            ReportRow(5, "b-5", Outcome.FAILED, "retries_exhausted"),
        ],
    )
    listed = tmp_path / "ids.csv"
    listed.write_bytes(b"\xef\xbb\xbfnote, eventId\nfirst,b-1\n\nsecond, b-9 \nthird,\n")

    assert report_event_ids(report) == {"b-2", "b-5"}
    assert report_event_ids(listed) == {"b-1", "b-9"}
    with pytest.raises(RowsRefused, match="has no eventId column"):
        report_event_ids(write(tmp_path / "other.csv", "id\nb-1\n"))
    with pytest.raises(RowsRefused, match="cannot read"):
        report_event_ids(tmp_path / "missing.csv")


# --- the command, before connecting --------------------------------------------------------------


def send(*arguments: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="regen-sync")
    add_operator_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["send", *arguments])


@pytest.fixture
def unreachable_kafka(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals must come before any connection: nothing listens on port 9 here."""
    for name in [name for name in os.environ if name.startswith("REGEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("REGEN_SECRETS_DIR", "/nonexistent")
    monkeypatch.setenv("REGEN_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9")


@pytest.mark.usefixtures("unreachable_kafka")
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--csv=x.csv"], "--csv needs --type"),
        (["--type=journal.fixed", "--csv=x.csv", "--jsonl=x.jsonl"], "--csv or --jsonl, not both"),
        (["--type=journal.fixed", "--csv=x.csv", "--journal-id=J1"], "drop --journal-id"),
        (["--type=journal.fixed", "--jsonl=x.jsonl", "--id=e1", "--count=2"], "drop --id, --count"),
        (["--type=journal.fixed", "--csv=x.csv", "--file=e.json"], "drop --file"),
        (["--type=journal.fixed", "--csv=x.csv", "--allow-invalid"], "drop --allow-invalid"),
        (["--type=journal.fixed", "--csv=x.csv", "--report=r.csv"], "--report needs --wait"),
        (["--type=journal.fixed", "--journal-id=J1", "--batch=b"], "--batch only with --csv"),
        (["--type=journal.fixed", "--journal-id=J1", "--skip-invalid", "--report=r.csv"],
         "--skip-invalid, --report only with --csv or --jsonl"),
        (["--type=journal.fixed", "--csv=/nonexistent/x.csv"], "cannot read /nonexistent/x.csv"),
        (["--type=journal.fixed", "--csv=x.csv", "--wait", "--report=/nonexistent/r.csv"],
         "no directory /nonexistent"),
    ],
)  # fmt: skip
def test_contradictory_arguments_exit_2_before_connecting(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert send_command(send(*flags)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.usefixtures("unreachable_kafka")
def test_invalid_rows_exit_2_listing_each_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "journals.csv", "journalId\nBJO-1\nBJO 2\nBJO-3\nBJO_4\n")

    assert send_command(send("--type=journal.fixed", f"--csv={path}")) == 2

    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"regen-sync send: {path} line 3 (row 2), column journalId: ")
    assert err[1].startswith(f"regen-sync send: {path} line 5 (row 4), column journalId: ")
    assert err[2] == (
        "regen-sync send: 2 invalid rows of 4, nothing sent (--skip-invalid sends the other 2)"
    )


@pytest.mark.usefixtures("unreachable_kafka")
def test_unknown_columns_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "journals.csv", "journalID\nBJO-1\n")

    assert send_command(send("--type=journal.fixed", f"--csv={path}")) == 2

    err = capsys.readouterr().err
    assert "unknown column 'journalID'" in err
    assert "the columns of journal.fixed are journalId, journal" in err


@pytest.mark.usefixtures("unreachable_kafka")
def test_a_file_without_rows_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "journals.csv", "journalId\n\n")

    assert send_command(send("--type=journal.fixed", f"--csv={path}")) == 2
    assert f"{path} has no rows" in capsys.readouterr().err


@pytest.mark.usefixtures("unreachable_kafka")
def test_valid_rows_go_on_to_kafka(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "journals.csv", "journalId\nBJO-1\nBJO 2\n")

    status = send_command(
        send("--type=journal.fixed", f"--csv={path}", "--skip-invalid", "--timeout=1")
    )

    assert status == 1
    err = capsys.readouterr().err
    assert "line 3 (row 2), column journalId" in err
    assert "Kafka: KafkaConnectionError" in err
