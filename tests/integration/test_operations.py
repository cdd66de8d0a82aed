"""Each operation's success path: the exact upstream request, and the succeeded event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from harness import EventSender, ResultWatcher, Sandbox, new_event, unique
from stack import Stack

pytestmark = pytest.mark.usefixtures("regen_service")


async def test_billing_document_fixed_regenerates_billing_transactions(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    invoice = unique("INV")
    event = new_event(
        "billing.document.fixed",
        {
            "documentType": "Invoice",
            "documentId": invoice,
            "documentNumber": "INV-0001",
            "onlyReSend": True,
            "reMigrate": False,
            "entityId": "entity-1",
            "orgIds": ["org-1", "org-2"],
        },
    )
    await sender.send(event, key=invoice)

    result = (await watcher.wait_for([event["id"]]))[event["id"]]

    [request] = await sandbox.requests("billing", match=invoice)
    assert request["method"] == "POST"
    assert request["path"] == "/v1/uno-regenerate/billing-transaction"
    assert request["query"] == {"onlyReSend": "true", "reMigrate": "false"}
    assert request["body"] == {"type": "Invoice", "id": invoice, "number": "INV-0001"}
    headers = request["headers"]
    assert headers["authorization"].startswith("Bearer ")
    assert headers["idempotency-key"].startswith("regen-sync-")
    assert len(headers["idempotency-key"]) <= 255
    assert headers["zuora-track-id"] == event["id"]
    assert headers["zuora-entity-ids"] == "entity-1"
    assert headers["zuora-org-ids"] == "org-1,org-2"
    assert headers["content-type"] == "application/json"

    assert result.topic == watcher.topics.succeeded
    assert result.key == invoice.encode()
    body = result.json()
    assert body["specversion"] == "1.0"
    assert body["type"] == "regeneration.succeeded"
    assert body["data"]["sourceEventId"] == event["id"]
    assert body["data"]["operation"] == "regenerate_billing_transactions"
    assert body["data"]["attempts"] == 1
    assert len(body["data"]["upstream"]["idList"]) == 2
    assert body["data"]["upstream"]["trackId"] == event["id"]
    assert body["data"]["upstream"]["requestId"]


async def test_booking_fixed_regenerates_booking_transactions(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    subscription = unique("A-S")
    event = new_event(
        "booking.fixed",
        {
            "objectType": "Subscription",
            "subscriptionName": subscription,
            "subscriptionVersion": 2,
            "onlyReSend": False,
        },
    )
    await sender.send(event, key=subscription)

    result = (await watcher.wait_for([event["id"]]))[event["id"]]

    [request] = await sandbox.requests("booking", match=subscription)
    assert request["path"] == "/v1/uno-regenerate/booking-transaction"
    assert request["query"] == {"onlyReSend": "false"}
    assert request["body"] == {
        "type": "Subscription",
        "subscriptionName": subscription,
        "subscriptionVersion": 2,
    }
    assert "zuora-entity-ids" not in request["headers"]
    data = result.json()["data"]
    assert data["operation"] == "regenerate_booking_transactions"
    assert data["objectKey"] == f"Subscription:name={subscription}"
    assert data["upstream"]["idList"]


async def test_account_charges_fixed_generates_an_invoice(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    account = unique("ACC")
    event = new_event(
        "account.charges.fixed",
        {"accountId": account, "invoiceDate": "2026-11-01", "targetDate": "2026-11-30"},
    )
    await sender.send(event, key=account)

    result = (await watcher.wait_for([event["id"]]))[event["id"]]

    [request] = await sandbox.requests("invoice", match=account)
    assert request["path"] == "/v1/action/generate"
    assert request["query"] == {}
    assert request["body"] == {
        "type": "Invoice",
        "objects": [
            {"AccountId": account, "InvoiceDate": "2026-11-01", "TargetDate": "2026-11-30"}
        ],
    }
    data = result.json()["data"]
    assert data["operation"] == "generate_invoice"
    assert len(data["upstream"]["invoiceId"]) == 32


async def test_account_charges_fixed_generates_billing_documents_on_tenants_with_orders(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("billing-documents", REGEN_ZUORA__INVOICE_API="billing-documents")
    account = unique("ACC")
    event = new_event(
        "account.charges.fixed",
        {
            "accountId": account,
            "invoiceDate": "2026-11-01",
            "targetDate": "2026-11-30",
            "subscriptionIds": ["8a8082c4-1", "8a8082c4-2"],
        },
    )
    await stack.sender.send(event, key=account)

    result = (await stack.watcher.wait_for([event["id"]]))[event["id"]]

    [request] = await stack.sandbox.requests("invoice", match=account)
    assert request["path"] == f"/v1/accounts/{account}/billing-documents/generate"
    assert request["query"] == {}
    assert request["body"] == {
        "effectiveDate": "2026-11-01",
        "targetDate": "2026-11-30",
        "subscriptionIds": ["8a8082c4-1", "8a8082c4-2"],
    }
    assert request["headers"]["idempotency-key"].startswith("regen-sync-")
    assert result.topic == stack.topics.succeeded
    data = result.json()["data"]
    assert data["operation"] == "generate_invoice"
    assert [len(data["upstream"]["invoiceIds"]), len(data["upstream"]["creditMemoIds"])] == [1, 1]


async def test_journal_fixed_regenerates_the_journal(
    sender: EventSender, watcher: ResultWatcher, sandbox: Sandbox
) -> None:
    journal = unique("BJO")
    event = new_event("journal.fixed", {"journalId": journal, "journal": {"notes": "fixed"}})
    await sender.send(event, key=journal)

    result = (await watcher.wait_for([event["id"]]))[event["id"]]

    [request] = await sandbox.requests("journal", match=journal)
    assert request["path"] == f"/public/v1/billing/journals/{journal}/regenerate"
    assert request["body"] == {"notes": "fixed"}
    assert request["headers"]["authorization"] == "Bearer it-softwareone-token-value"
    assert "idempotency-key" not in request["headers"]
    data = result.json()["data"]
    assert data["operation"] == "regenerate_journal"
    assert data["upstream"]["journalId"] == journal
    assert data["upstream"]["status"] == "Validating"
