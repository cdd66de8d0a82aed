"""The pure parts of `regen-sync trace`: records into timeline entries, the status and exit
status, the printed timeline and JSON document, the window's offset ranges, the arguments."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import UnsupportedVersionError
from aiokafka.structs import ConsumerRecord, OffsetAndTimestamp

from regen_sync.config import TopicSettings
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
from regen_sync.operator.redrive_selection import REDRIVEN_FROM
from regen_sync.operator.trace import (
    Collector,
    Entry,
    Status,
    Trace,
    What,
    iso,
    parse_duration,
    timeline_lines,
    trace_command,
    trace_document,
    window_ranges,
)
from regen_sync.processing import REDRIVE_HEADER

TOPICS = TopicSettings(input="in", succeeded="ok", failed="ko", dead_letter="dlq")
START = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
SINCE = START - dt.timedelta(hours=1)
UNTIL = START + dt.timedelta(hours=1)
EVENT_ID = "fix-2026-11-21-0001"


def event(event_id: str = EVENT_ID, **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:billing:backfill",
        "type": "billing.document.fixed",
        "data": {"documentType": "Invoice", "documentId": "2c98-INV"},
    } | extra


def succeeded(source_id: str = EVENT_ID, served_by: str | None = None) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": "regeneration.succeeded",
        "id": "result-1",
        "source": "urn:regen-sync",
        "data": {
            "sourceEventId": source_id,
            "sourceEventType": "billing.document.fixed",
            "operation": "regenerate_billing_transactions",
            "attempts": 1,
            "servedByEventId": served_by or source_id,
            "upstream": {"idList": ["2c98-a", "2c98-b"], "requestId": "r-1", "trackId": "t-1"},
        },
    }


def failed(source_id: str = EVENT_ID, reason: str = "not_found") -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": "regeneration.failed",
        "id": "result-2",
        "source": "urn:regen-sync",
        "data": {
            "sourceEventId": source_id,
            "sourceEventType": "billing.document.fixed",
            "attempts": 1,
            "servedByEventId": source_id,
            "reason": reason,
            "message": "Zuora answered HTTP 404:\n  Invoice not found",
            "retryable": False,
            "httpStatus": 404,
        },
    }


def dead_letter_headers(reason: str = "not_found") -> list[tuple[str, bytes]]:
    return [
        (DLQ_REASON, reason.encode()),
        (DLQ_MESSAGE, b"Zuora answered HTTP 404"),
        (DLQ_ORIGINAL_TOPIC, b"in"),
        (DLQ_ORIGINAL_PARTITION, b"3"),
        (DLQ_ORIGINAL_OFFSET, b"17"),
        (DLQ_FAILED_AT, START.isoformat().encode()),
    ]


def record(
    topic: str,
    value: dict[str, Any] | bytes | None,
    *,
    seconds: float = 0,
    partition: int = 3,
    offset: int = 17,
    headers: list[tuple[str, bytes]] | None = None,
) -> ConsumerRecord[bytes, bytes]:
    raw = value if isinstance(value, bytes) or value is None else json.dumps(value).encode()
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=int((START + dt.timedelta(seconds=seconds)).timestamp() * 1000),
        timestamp_type=0,
        key=b"Invoice:2c98-INV",
        value=raw,
        checksum=None,
        serialized_key_size=16,
        serialized_value_size=len(raw or b""),
        headers=headers or [],
    )


def collect(*records: ConsumerRecord[bytes, bytes], event_id: str = EVENT_ID) -> Trace:
    collector = Collector(event_id, TOPICS, SINCE)
    for each in records:
        collector.add(each)
    return collector.trace(UNTIL)


def entry(what: What, seconds: float, offset: int = 0, **fields: Any) -> Entry:
    topic = {What.DEAD_LETTERED: "dlq", What.SUCCEEDED: "ok", What.FAILED: "ko"}.get(what, "in")
    return Entry(
        time=START + dt.timedelta(seconds=seconds),
        topic=topic,
        partition=0,
        offset=offset,
        what=what,
        **fields,
    )


def trace_of(*entries: Entry) -> Trace:
    return Trace(EVENT_ID, SINCE, UNTIL, tuple(sorted(entries, key=lambda each: each.order)))


# --- records into entries ------------------------------------------------------------------------


def test_an_input_record_is_received() -> None:
    trace = collect(record("in", event()))

    assert trace.entries == (
        Entry(
            time=START,
            topic="in",
            partition=3,
            offset=17,
            what=What.RECEIVED,
            event_type="billing.document.fixed",
            source="urn:billing:backfill",
        ),
    )


def test_a_republished_record_is_a_redriven_input_with_its_count_and_dead_letter() -> None:
    headers = [(REDRIVEN_FROM, b"dlq/3/4"), (REDRIVE_HEADER, b"2")]

    (redriven,) = collect(record("in", event(), headers=headers)).entries

    assert redriven.what is What.REDRIVEN
    assert (redriven.redrive, redriven.redriven_from) == (2, "dlq/3/4")
    assert redriven.details() == "re-drive 2 of dead letter dlq/3/4"


def test_a_dead_letter_names_its_reason_message_and_input_record() -> None:
    (dead,) = collect(record("dlq", event(), headers=dead_letter_headers())).entries

    assert dead.what is What.DEAD_LETTERED
    assert (dead.reason, dead.message, dead.input_record) == (
        "not_found",
        "Zuora answered HTTP 404",
        "in/3/17",
    )
    assert dead.details() == "input in/3/17; Zuora answered HTTP 404"


def test_a_truncated_dead_letter_is_recognised_by_its_id_though_its_json_is_cut() -> None:
    value = json.dumps(event(data={"padding": "x" * 200})).encode()[:120]
    headers = [*dead_letter_headers("internal_error"), (DLQ_TRUNCATED_FROM, b"9000000")]

    (dead,) = collect(record("dlq", value, headers=headers)).entries
    other = collect(record("dlq", value, headers=headers), event_id="fix-2026-11-21-0002")

    assert dead.truncated
    assert dead.reason == "internal_error"
    assert other.entries == ()


def test_a_succeeded_result_carries_attempts_and_the_upstream_ids_only() -> None:
    (result,) = collect(record("ok", succeeded())).entries

    assert result.what is What.SUCCEEDED
    assert result.attempts == 1
    assert result.served_by is None
    assert result.upstream_ids == {"idList": ["2c98-a", "2c98-b"]}
    assert result.details() == "idList=2c98-a,2c98-b"


def test_a_failed_result_carries_reason_status_and_message_on_one_line() -> None:
    (result,) = collect(record("ko", failed())).entries

    assert (result.what, result.reason, result.http_status, result.retryable) == (
        What.FAILED,
        "not_found",
        404,
        False,
    )
    assert result.details() == "Zuora answered HTTP 404: Invoice not found"


@pytest.mark.parametrize(
    ("data", "details"),
    [
        (
            {"httpStatus": 200, "message": "Zuora answered success: false"},
            "Zuora answered success: false",
        ),
        (
            {
                "httpStatus": 404,
                "message": "upstream answered HTTP 404",
                "upstreamError": {"title": "Not Found", "detail": "Journal BJO-1 was not found."},
            },
            "upstream answered HTTP 404; Journal BJO-1 was not found.",
        ),
        (
            {
                "httpStatus": 200,
                "message": "Cannot find",
                "upstreamError": {
                    "reasons": [{"code": 50000040, "message": "Cannot find"}],
                    "requestId": "r-1",
                },
            },
            "Cannot find; code 50000040",
        ),
        (
            {"message": "x", "upstreamError": {"Errors": [{"Code": "INVALID", "Message": "m"}]}},
            "x; INVALID: m",
        ),
        (
            {"message": "journalId: bad; type: unknown", "problems": ["journalId: bad", 7]},
            "journalId: bad; type: unknown",
        ),
        ({"message": "x", "upstreamError": {"reasons": "garbled", "title": 5}}, "x"),
        (
            {"httpStatus": 503, "message": "y", "problems": ["bad field"]},
            "HTTP 503; y; bad field",
        ),
    ],
)
def test_a_failure_says_what_the_upstream_said_in_a_few_words(
    data: dict[str, Any], details: str
) -> None:
    value = failed()
    value["data"] = {"sourceEventId": EVENT_ID, "reason": "rejected"} | data

    (result,) = collect(record("ko", value)).entries

    assert result.details() == details
    assert result.upstream_error == data.get("upstreamError")


def test_a_result_served_by_another_event_names_it_and_that_event_lists_it() -> None:
    coalesced = record("ok", succeeded("fix-2", served_by=EVENT_ID))

    (result,) = collect(coalesced, event_id="fix-2").entries
    leader = collect(record("ok", succeeded()), coalesced)

    assert result.served_by == EVENT_ID
    assert result.details().startswith(f"served by {EVENT_ID}; idList=")
    assert [each.what for each in leader.entries] == [What.SUCCEEDED]
    assert leader.served == ("fix-2",)
    assert "its upstream call also served 1 other event: fix-2" in leader.notes()


@pytest.mark.parametrize(
    ("topic", "value", "headers"),
    [
        ("in", event("fix-2026-11-21-00011"), None),  # another id that contains this one
        ("in", {"data": {"sourceEventId": EVENT_ID}}, None),  # an input without this id
        ("in", b"not json " + EVENT_ID.encode(), None),
        ("in", [EVENT_ID], None),
        ("in", None, None),
        ("ok", event(), None),  # not a result event
        ("ko", failed("fix-other"), None),
        ("ok", {"type": "regeneration.succeeded", "data": EVENT_ID}, None),
        ("dlq", event(), []),  # on the dead-letter topic, but not written by regen-sync
        ("dlq", event("fix-other", note=EVENT_ID), dead_letter_headers()),
        ("elsewhere", event(), None),
    ],
)
def test_records_of_other_events_and_anything_unreadable_are_ignored(
    topic: str, value: Any, headers: list[tuple[str, bytes]] | None
) -> None:
    assert collect(record(topic, value, headers=headers)).entries == ()


def test_records_older_than_the_window_are_ignored() -> None:
    too_old = (SINCE - START).total_seconds() - 0.001

    assert collect(record("in", event(), seconds=too_old)).entries == ()
    assert len(collect(record("in", event(), seconds=too_old + 0.001)).entries) == 1


def test_an_id_json_escapes_is_still_found() -> None:
    odd = 'fix "é/1"'
    ascii_escaped = json.dumps(event(odd)).encode()
    as_written = json.dumps(event(odd), ensure_ascii=False).replace("/", "\\/").encode("utf-8")

    assert len(collect(record("in", ascii_escaped), event_id=odd).entries) == 1
    assert len(collect(record("in", as_written), event_id=odd).entries) == 1


def test_entries_of_one_millisecond_are_ordered_input_dead_letter_result() -> None:
    trace = collect(
        record("ko", failed(), offset=1),
        record("dlq", event(), headers=dead_letter_headers(), offset=2),
        record("in", event(), offset=3),
    )

    assert [each.what for each in trace.entries] == [
        What.RECEIVED,
        What.DEAD_LETTERED,
        What.FAILED,
    ]


# --- status --------------------------------------------------------------------------------------


def test_nothing_found_is_not_found_exit_2() -> None:
    trace = trace_of()

    assert (trace.status, trace.status.exit_status) == (Status.NOT_FOUND, 2)
    assert trace.outcome is None


def test_an_input_without_a_result_is_pending_exit_1() -> None:
    trace = trace_of(entry(What.RECEIVED, 0))

    assert (trace.status, trace.status.exit_status) == (Status.PENDING, 1)
    assert "no result after the latest input record in/0/0 yet" in trace.notes()


def test_a_result_after_the_input_is_the_outcome_exit_0_a_failure_too() -> None:
    ok = entry(What.SUCCEEDED, 1)
    ko = entry(What.FAILED, 1, reason="not_found")

    assert trace_of(entry(What.RECEIVED, 0), ok).outcome == ok
    assert trace_of(entry(What.RECEIVED, 0), ok).status.exit_status == 0
    assert trace_of(entry(What.RECEIVED, 0), ko).status is Status.FAILED
    assert trace_of(entry(What.RECEIVED, 0), ko).status.exit_status == 0


def test_a_redrive_after_a_failure_is_pending_until_its_own_result() -> None:
    history = [
        entry(What.RECEIVED, 0, offset=1),
        entry(What.DEAD_LETTERED, 1),
        entry(What.FAILED, 1, reason="not_found"),
        entry(What.REDRIVEN, 5, offset=2, redrive=1),
    ]
    redriven_result = entry(What.SUCCEEDED, 6)

    assert trace_of(*history).status is Status.PENDING
    assert trace_of(*history, redriven_result).status is Status.SUCCEEDED
    assert trace_of(*history, redriven_result).outcome == redriven_result


def test_the_latest_result_after_the_latest_input_wins() -> None:
    later = entry(What.SUCCEEDED, 3, offset=2)

    trace = trace_of(entry(What.RECEIVED, 0), entry(What.SUCCEEDED, 1, offset=1), later)

    assert trace.outcome == later


def test_a_result_without_its_input_in_the_window_is_an_outcome_with_a_note() -> None:
    trace = trace_of(entry(What.SUCCEEDED, 1))

    assert (trace.status, trace.status.exit_status, trace.input_seen) == (
        Status.SUCCEEDED,
        0,
        False,
    )
    assert trace.notes()[0].startswith(f"the input record was not seen since {iso(SINCE)}")


def test_a_dead_letter_alone_is_seen_but_pending() -> None:
    assert trace_of(entry(What.DEAD_LETTERED, 1)).status is Status.PENDING


def test_a_long_list_of_events_served_is_cut_in_the_note_not_in_the_document() -> None:
    served = [record("ok", succeeded(f"fix-{n}", served_by=EVENT_ID)) for n in range(12)]

    trace = collect(*served)

    assert trace.notes()[-1].endswith("fix-8, fix-9 and 2 more")
    assert trace_document(trace, "24h")["servedEvents"] == [f"fix-{n}" for n in range(12)]


def test_records_of_two_sources_with_one_id_are_noted() -> None:
    trace = trace_of(
        entry(What.RECEIVED, 0, source="urn:a"), entry(What.RECEIVED, 1, offset=1, source="urn:b")
    )

    assert any("records of 2 sources carry this id" in note for note in trace.notes())


# --- printing ------------------------------------------------------------------------------------


def redriven_story() -> Trace:
    return collect(
        record("in", event(), offset=17),
        record("dlq", event(), seconds=1, offset=0, headers=dead_letter_headers()),
        record("ko", failed(), seconds=1, offset=0),
        record(
            "in",
            event(),
            seconds=30,
            offset=18,
            headers=[(REDRIVEN_FROM, b"dlq/3/0"), (REDRIVE_HEADER, b"1")],
        ),
        record("ok", succeeded(), seconds=31, offset=0),
    )


def test_the_timeline_has_a_heading_aligned_columns_the_status_and_notes() -> None:
    lines = timeline_lines(redriven_story(), "1h")

    assert lines == [
        f"event {EVENT_ID}, last 1h (since 2026-11-21T09:00:00.000Z)",
        "TIME                      RECORD   WHAT             REASON     ATTEMPTS  DETAILS",
        "2026-11-21T10:00:00.000Z  in/3/17  received                              "
        "billing.document.fixed",
        "2026-11-21T10:00:01.000Z  dlq/3/0  dead-lettered    not_found            "
        "input in/3/17; Zuora answered HTTP 404",
        "2026-11-21T10:00:01.000Z  ko/3/0   failed           not_found  1         "
        "Zuora answered HTTP 404: Invoice not found",
        "2026-11-21T10:00:30.000Z  in/3/18  re-driven input                       "
        "re-drive 1 of dead letter dlq/3/0",
        "2026-11-21T10:00:31.000Z  ok/3/0   succeeded                   1         "
        "idList=2c98-a,2c98-b",
        "status: succeeded at 2026-11-21T10:00:31.000Z, ok/3/0",
    ]


def test_the_status_line_of_a_failure_and_of_a_pending_event() -> None:
    failure = timeline_lines(trace_of(entry(What.FAILED, 1, reason="rejected")), "24h")
    pending = timeline_lines(trace_of(entry(What.RECEIVED, 0)), "24h")

    assert "status: failed (rejected) at 2026-11-21T10:00:01.000Z, ko/0/0" in failure
    assert "status: pending: no outcome after the latest input record yet" in pending
    assert "note: no result after the latest input record in/0/0 yet" in pending


def test_the_json_document_has_the_window_every_entry_and_the_status() -> None:
    document = json.loads(json.dumps(trace_document(redriven_story(), "1h")))

    assert document["eventId"] == EVENT_ID
    assert document["window"] == {
        "duration": "1h",
        "since": "2026-11-21T09:00:00.000Z",
        "until": "2026-11-21T11:00:00.000Z",
    }
    assert (document["status"], document["inputSeen"]) == ("succeeded", True)
    assert [each["what"] for each in document["entries"]] == [
        "received",
        "dead_lettered",
        "failed",
        "redriven",
        "succeeded",
    ]
    assert document["outcome"] == document["entries"][-1]
    assert document["entries"][-1] == {
        "time": "2026-11-21T10:00:31.000Z",
        "topic": "ok",
        "partition": 3,
        "offset": 0,
        "what": "succeeded",
        "eventType": "billing.document.fixed",
        "source": None,
        "reason": None,
        "message": None,
        "attempts": 1,
        "servedBy": None,
        "upstreamIds": {"idList": ["2c98-a", "2c98-b"]},
        "httpStatus": None,
        "retryable": None,
        "upstreamError": None,
        "problems": [],
        "redrive": None,
        "redrivenFrom": None,
        "inputRecord": None,
        "truncated": False,
    }
    assert document["entries"][3]["redrivenFrom"] == "dlq/3/0"
    assert document["servedEvents"] == []
    assert document["notes"] == []


def test_the_json_document_of_an_unknown_event() -> None:
    document = trace_document(trace_of(), "24h")

    assert (document["status"], document["outcome"], document["entries"]) == (
        "not_found",
        None,
        [],
    )


# --- durations and arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("90m", 5400),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        (" 2W ", 1209600),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1h", "5x", "0h", "1h 30m", "P1D"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|more than 0"):
        parse_duration(text)


def parse(*arguments: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="regen-sync")
    add_operator_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["trace", *arguments])


def test_the_defaults() -> None:
    arguments = parse(EVENT_ID)

    assert (arguments.event_id, arguments.since, arguments.json, arguments.timeout) == (
        EVENT_ID,
        "24h",
        False,
        30.0,
    )


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("REGEN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REGEN_SECRETS_DIR", "/nonexistent")


@pytest.mark.usefixtures("no_settings")
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((EVENT_ID, "--since", "5x"), "regen-sync trace: --since: '5x' is not a duration"),
        (("",), "regen-sync trace: EVENT_ID must not be empty"),
        ((EVENT_ID,), "REGEN_KAFKA__BOOTSTRAP_SERVERS: Field required"),
    ],
)
def test_bad_arguments_and_configuration_exit_2_saying_which(
    arguments: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert trace_command(parse(*arguments)) == 2
    assert message in capsys.readouterr().err


# --- the window's offsets ------------------------------------------------------------------------


class FakeConsumer:
    """What window_ranges asks of aiokafka's consumer."""

    def __init__(
        self,
        beginnings: dict[TopicPartition, int],
        ends: dict[TopicPartition, int],
        found: dict[TopicPartition, OffsetAndTimestamp | None] | None,
    ) -> None:
        self.beginnings, self.ends, self.found = beginnings, ends, found
        self.asked: dict[TopicPartition, int] = {}

    async def beginning_offsets(
        self, partitions: list[TopicPartition]
    ) -> dict[TopicPartition, int]:
        return {partition: self.beginnings[partition] for partition in partitions}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {partition: self.ends[partition] for partition in partitions}

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        self.asked = timestamps
        if self.found is None:
            raise UnsupportedVersionError("ListOffsets v1")
        return {partition: self.found[partition] for partition in timestamps}


P = [TopicPartition("in", number) for number in range(5)]


async def test_a_partition_is_read_from_the_first_offset_of_the_window_to_its_end() -> None:
    consumer = FakeConsumer(
        beginnings=dict.fromkeys(P, 0) | {P[1]: 40},
        ends={P[0]: 100, P[1]: 50, P[2]: 7, P[3]: 0, P[4]: 3},
        found={
            P[0]: OffsetAndTimestamp(60, 1),  # Kafka: the first record at or after since
            P[1]: OffsetAndTimestamp(0, -1),  # Tansu: offset 0 whatever the timestamp
            P[2]: None,  # Kafka: no record that recent
            P[3]: OffsetAndTimestamp(0, -1),  # empty
            P[4]: OffsetAndTimestamp(9, 1),  # past an end offset that under-reports
        },
    )

    ranges = await window_ranges(consumer, P, 1234, 5)

    assert consumer.asked == dict.fromkeys(P, 1234)
    assert ranges == {
        P[0]: range(60, 100),
        P[1]: range(40, 50),
        P[2]: range(0),
        P[3]: range(0),
        P[4]: range(2, 3),
    }


async def test_a_broker_without_a_time_index_is_read_from_the_beginning() -> None:
    consumer = FakeConsumer(dict.fromkeys(P[:2], 5), {P[0]: 9, P[1]: 5}, found=None)

    assert await window_ranges(consumer, P[:2], 1234, 5) == {P[0]: range(5, 9), P[1]: range(0)}
