"""How upstream failures end: retried with the same key when transient, reported when not."""

from __future__ import annotations

from typing import Any

import pytest
from harness import EventSender, Received, ResultWatcher, Sandbox, billing_event, new_event, unique

pytestmark = pytest.mark.usefixtures("regen_service")


async def outcome_of(
    sender: EventSender, watcher: ResultWatcher, event: dict[str, Any], key: str
) -> tuple[Received, dict[str, Any]]:
    await sender.send(event, key=key)
    result = (await watcher.wait_for([event["id"]]))[event["id"]]
    return result, result.json()["data"]


async def dead_letter_of(watcher: ResultWatcher, key: str) -> Received:
    [record] = await watcher.wait_for_dead_letters(1, lambda r: r.key == key.encode())
    return record


async def test_success_false_with_a_permanent_code_fails_without_retry(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    document = unique("INV")
    await sandbox.fault(
        operation="billing",
        kind="success_false",
        code="53100320",
        message="Invoice is not posted",
        match=document,
    )
    event = billing_event(document)

    result, data = await outcome_of(sender, watcher, event, document)

    assert result.topic == watcher.topics.failed
    assert data["reason"] == "rejected"
    assert data["retryable"] is False
    assert data["httpStatus"] == 200
    assert data["attempts"] == 1
    assert data["upstreamError"]["reasons"] == [
        {"code": "53100320", "message": "Invoice is not posted"}
    ]
    assert len(await sandbox.requests("billing", match=document)) == 1
    dead = await dead_letter_of(watcher, document)
    assert dead.json() == event
    assert dead.headers["regen-error-reason"] == b"rejected"
    assert dead.headers["regen-original-topic"] == watcher.topics.input.encode()
    assert int(dead.headers["regen-original-offset"]) >= 0


async def test_success_false_with_a_transient_code_is_retried_under_a_new_key(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    subscription = unique("A-S")
    await sandbox.fault(
        operation="booking", kind="success_false", code="53100050", times=2, match=subscription
    )
    event = new_event(
        "booking.fixed", {"objectType": "Subscription", "subscriptionId": subscription}
    )

    result, data = await outcome_of(sender, watcher, event, subscription)

    assert result.topic == watcher.topics.succeeded
    assert data["attempts"] == 3
    requests = await sandbox.requests("booking", match=subscription)
    assert len(requests) == 3
    # Zuora stored each failure under its key: repeating a key would only replay it.
    assert len({r["headers"]["idempotency-key"] for r in requests}) == 3
    assert not any(r["replayed"] for r in requests)


async def test_429_retry_after_is_honoured_then_a_new_idempotency_key_is_used(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    document = unique("CM")
    await sandbox.fault(
        operation="billing", kind="status", status=429, retryAfter=1.5, times=1, match=document
    )
    event = billing_event(document)

    result, data = await outcome_of(sender, watcher, event, document)

    assert result.topic == watcher.topics.succeeded
    assert data["attempts"] == 2
    first, second = await sandbox.requests("billing", match=document)
    assert first["status"] == 429
    assert second["status"] == 200
    # Backoff alone would wait at most 0.5 s here; only Retry-After explains 1.5 s.
    assert second["received_at"] - first["answered_at"] >= 1.4
    assert first["headers"]["idempotency-key"] != second["headers"]["idempotency-key"]


async def test_persistent_5xx_ends_in_retries_exhausted(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    account = unique("ACC")
    await sandbox.fault(operation="invoice", kind="status", status=503, match=account)
    event = new_event(
        "account.charges.fixed",
        {"accountId": account, "invoiceDate": "2026-11-01", "targetDate": "2026-11-01"},
    )

    result, data = await outcome_of(sender, watcher, event, account)

    assert result.topic == watcher.topics.failed
    assert data["reason"] == "retries_exhausted"
    assert data["retryable"] is True
    assert data["httpStatus"] == 503
    assert data["attempts"] == 6
    assert len(await sandbox.requests("invoice", match=account)) == 6
    await dead_letter_of(watcher, account)


async def test_invoice_success_false_is_a_failure_with_zuora_errors(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    account = unique("ACC")
    await sandbox.fault(
        operation="invoice",
        kind="success_false",
        code="INVALID_VALUE",
        message="no charges to bill",
        match=account,
    )
    event = new_event(
        "account.charges.fixed",
        {"accountId": account, "invoiceDate": "2026-11-01", "targetDate": "2026-11-01"},
    )

    _, data = await outcome_of(sender, watcher, event, account)

    assert data["reason"] == "rejected"
    assert data["upstreamError"]["Errors"] == [
        {"Code": "INVALID_VALUE", "Message": "no charges to bill"}
    ]


async def test_unknown_journal_is_not_found_and_not_retried(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    journal = unique("missing")
    event = new_event("journal.fixed", {"journalId": journal})

    _, data = await outcome_of(sender, watcher, event, journal)

    assert data["reason"] == "not_found"
    assert data["httpStatus"] == 404
    assert data["upstreamError"]["title"] == "Not Found"
    assert data["retryable"] is False
    assert len(await sandbox.requests("journal", match=journal)) == 1


async def test_journal_forbidden_is_reported_with_problem_details(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    journal = unique("BJO")
    await sandbox.fault(operation="journal", kind="status", status=403, match=journal)
    event = new_event("journal.fixed", {"journalId": journal})

    _, data = await outcome_of(sender, watcher, event, journal)

    assert data["reason"] == "forbidden"
    assert data["upstreamError"]["status"] == 403


async def test_journal_500_is_not_repeated_because_softwareone_has_no_idempotency(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    journal = unique("BJO")
    await sandbox.fault(operation="journal", kind="status", status=500, match=journal)
    event = new_event("journal.fixed", {"journalId": journal})

    _, data = await outcome_of(sender, watcher, event, journal)

    assert data["reason"] == "outcome_unknown"
    assert data["retryable"] is True
    assert len(await sandbox.requests("journal", match=journal)) == 1


async def test_journal_503_is_retried_because_it_was_not_taken(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    journal = unique("BJO")
    await sandbox.fault(operation="journal", kind="status", status=503, times=1, match=journal)
    event = new_event("journal.fixed", {"journalId": journal})

    result, data = await outcome_of(sender, watcher, event, journal)

    assert result.topic == watcher.topics.succeeded
    assert data["attempts"] == 2


async def test_zuora_422_idempotency_conflict_is_permanent(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    document = unique("DM")
    await sandbox.fault(operation="billing", kind="status", status=422, match=document)

    _, data = await outcome_of(sender, watcher, billing_event(document), document)

    assert data["reason"] == "idempotency_conflict"
    assert len(await sandbox.requests("billing", match=document)) == 1


async def test_revoked_token_causes_exactly_one_refresh_and_the_call_succeeds(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    warm_up = unique("INV")
    await outcome_of(sender, watcher, billing_event(warm_up), warm_up)
    tokens_before = len(await sandbox.requests("token"))
    await sandbox.revoke_tokens()
    document = unique("INV")

    result, data = await outcome_of(sender, watcher, billing_event(document), document)

    assert result.topic == watcher.topics.succeeded
    assert data["attempts"] == 1
    rejected, accepted = await sandbox.requests("billing", match=document)
    assert (rejected["status"], accepted["status"]) == (401, 200)
    assert rejected["headers"]["authorization"] != accepted["headers"]["authorization"]
    assert len(await sandbox.requests("token")) == tokens_before + 1
