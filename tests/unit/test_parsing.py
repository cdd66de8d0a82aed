"""Every kind of bad input is named precisely; every valid event is typed."""

import json
from typing import Any

import pytest

from regen_sync.domain import (
    AccountChargesFixed,
    BookingFixed,
    InvalidEvent,
    JournalFixed,
    Operation,
    parse_event,
    plan,
)
from regen_sync.domain.parsing import MAX_NESTING

LIMIT = 1024 * 1024


def cloud_event(event_type: str, data: Any, **extra: Any) -> bytes:
    event = {"specversion": "1.0", "id": "evt-1", "source": "billing/fixer", "type": event_type}
    return json.dumps(event | {"data": data} | extra).encode()


def invalid(raw: bytes) -> InvalidEvent:
    result = parse_event(raw, max_bytes=LIMIT)
    assert isinstance(result, InvalidEvent), result
    return result


@pytest.mark.parametrize(
    ("raw", "expected_problem"),
    [
        (b"\xff\xfe not utf-8", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a CloudEvent: a JSON list"),
        (b"[" * 50_000, "nested too deeply"),
        (b"", "no value"),
        (json.dumps({"id": "x", "type": "booking.fixed"}).encode(), "specversion"),
        (cloud_event("invoice.exploded", {}), "unknown event type 'invoice.exploded'"),
        (
            cloud_event("billing.document.fixed", {"documentType": "Invoice"}),
            "documentId or documentNumber is required",
        ),
        (
            cloud_event(
                "billing.document.fixed",
                {
                    "documentType": "Invoice",
                    "documentId": "a",
                    "onlyReSend": True,
                    "reMigrate": True,
                },
            ),
            "onlyReSend and reMigrate cannot both be true",
        ),
        (
            cloud_event("journal.fixed", {"journalId": "../../admin"}),
            "data.journalId: String should match pattern",
        ),
        (
            cloud_event("booking.fixed", {"objectType": "Subscription", "subscriptionName": "S"}),
            "Subscription needs subscriptionId or subscriptionName + subscriptionVersion",
        ),
        (
            cloud_event(
                "account.charges.fixed",
                {"accountId": "A", "invoiceDate": "soon", "targetDate": "2026-01-01"},
            ),
            "data.invoiceDate",
        ),
        (
            cloud_event("billing.document.fixed", {"documentType": "Invoice", "documentID": "a"}),
            "documentID: Extra inputs are not permitted",
        ),
        (
            cloud_event(
                "billing.document.fixed", {"documentType": "Invoice", "documentId": "a\x00b"}
            ),
            "data.documentId",
        ),
    ],
)
def test_invalid_input_is_named(raw: bytes, expected_problem: str) -> None:
    problems = " | ".join(invalid(raw).problems)
    assert expected_problem in problems


def test_oversized_event_is_invalid_without_being_parsed() -> None:
    result = parse_event(b"x" * 2000, max_bytes=1024)
    assert isinstance(result, InvalidEvent)
    assert result.problems == ("the event is 2000 bytes, above the limit of 1024",)


def test_invalid_event_keeps_a_readable_id_and_type() -> None:
    result = invalid(cloud_event("journal.fixed", {"journalId": "a b"}))
    assert (result.event_id, result.event_type) == ("evt-1", "journal.fixed")


def test_unreadable_id_is_not_reported_as_the_event_id() -> None:
    raw = json.dumps({"specversion": "1.0", "id": {"x": 1}, "source": "s", "type": "t"}).encode()
    assert invalid(raw).event_id is None


def test_each_type_maps_to_its_operation_and_object() -> None:
    cases = [
        (
            cloud_event(
                "billing.document.fixed", {"documentType": "CreditMemo", "documentNumber": "CM-1"}
            ),
            Operation.REGENERATE_BILLING_TRANSACTIONS,
            "CreditMemo:number=CM-1",
        ),
        (
            cloud_event(
                "booking.fixed",
                {
                    "objectType": "Subscription",
                    "subscriptionName": "A-S1",
                    "subscriptionVersion": 3,
                    "entityId": "e1",
                },
            ),
            Operation.REGENERATE_BOOKING_TRANSACTIONS,
            "e1/Subscription:name=A-S1",
        ),
        (
            cloud_event(
                "account.charges.fixed",
                {"accountId": "A1", "invoiceDate": "2026-01-02", "targetDate": "2026-01-31"},
            ),
            Operation.GENERATE_INVOICE,
            "Account:A1",
        ),
        (
            cloud_event("journal.fixed", {"journalId": "BJO-1234-5678"}),
            Operation.REGENERATE_JOURNAL,
            "Journal:BJO-1234-5678",
        ),
    ]
    for raw, operation, object_key in cases:
        event = parse_event(raw, max_bytes=LIMIT)
        assert not isinstance(event, InvalidEvent), event
        task = plan(event)
        assert (task.operation, task.object_key) == (operation, object_key)


def test_idempotency_key_is_stable_per_event_and_operation_and_fits_zuora() -> None:
    raw = cloud_event("journal.fixed", {"journalId": "J-1"}, id="x" * 255)
    first, again = (plan(parse_event(raw, max_bytes=LIMIT)) for _ in range(2))  # type: ignore[arg-type]
    other = plan(
        parse_event(cloud_event("journal.fixed", {"journalId": "J-1"}, id="y"), max_bytes=LIMIT)
    )  # type: ignore[arg-type]
    assert first.idempotency_key == again.idempotency_key
    assert first.idempotency_key != other.idempotency_key
    assert len(first.idempotency_key) <= 255


def test_valid_events_are_typed() -> None:
    booking = parse_event(
        cloud_event(
            "booking.fixed",
            {"objectType": "OrderLineItem", "orderNumber": "O-1", "itemNumber": "2"},
        ),
        max_bytes=LIMIT,
    )
    assert isinstance(booking, BookingFixed)
    journal = parse_event(
        cloud_event("journal.fixed", {"journalId": "J-1", "journal": {"notes": "n"}}),
        max_bytes=LIMIT,
    )
    assert isinstance(journal, JournalFixed)
    assert journal.data.journal == {"notes": "n"}
    account = parse_event(
        cloud_event(
            "account.charges.fixed",
            {"accountId": "A", "invoiceDate": "2026-01-02", "targetDate": "2026-01-31"},
        ),
        max_bytes=LIMIT,
    )
    assert isinstance(account, AccountChargesFixed)


def test_json_nested_deeper_than_the_limit_is_an_invalid_event_not_an_error() -> None:
    nested: object = "bottom"
    for _ in range(MAX_NESTING + 5):
        nested = {"a": nested}
    raw = json.dumps(
        {
            "specversion": "1.0",
            "id": "deep-1",
            "source": "s",
            "type": "journal.fixed",
            "data": {"journalId": "BJO-1", "journal": nested},
        }
    ).encode()
    invalid = parse_event(raw, max_bytes=1_000_000)
    assert isinstance(invalid, InvalidEvent)
    assert invalid.problems == (f"nested deeper than {MAX_NESTING} levels",)
    assert invalid.event_id == "deep-1"
