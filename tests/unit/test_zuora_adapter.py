"""The Zuora adapter against an in-process HTTP double: wire format, tokens, answers.

(The same behaviours are proven end to end against the sandbox in tests/integration.)
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fakes import planned_task

from regen_sync.config import ZuoraSettings
from regen_sync.domain import (
    Failed,
    FailureReason,
    RegenerationTask,
    Succeeded,
    TransientFailure,
    parse_event,
)
from regen_sync.domain.parsing import InvalidEvent
from regen_sync.observability import Metrics
from regen_sync.upstream import ZuoraClient, ZuoraTokens, zuora_request
from regen_sync.upstream.zuora import track_id

SETTINGS = ZuoraSettings.model_validate(
    {"base_url": "https://zuora.test", "client_id": "id", "client_secret": "real-secret"}
)


def task_for(event_type: str, data: dict[str, Any], event_id: str = "evt-1") -> RegenerationTask:
    return planned_task(event_type, data, event_id)


def test_track_id_is_sanitised_and_bounded() -> None:
    assert track_id("evt:1;'x\" ü") == "evt_1__x___"
    assert len(track_id("a" * 300)) == 64


def test_billing_request_supports_the_older_document_id_field() -> None:
    task = task_for("billing.document.fixed", {"documentType": "Invoice", "documentId": "D1"})
    assert zuora_request(task).body == {"type": "Invoice", "id": "D1"}
    assert zuora_request(task, billing_id_field="documentId").body == {
        "type": "Invoice",
        "documentId": "D1",
    }


def test_booking_request_sends_only_given_identifiers_and_flags() -> None:
    task = task_for(
        "booking.fixed",
        {"objectType": "DynamicUsageCharge", "chargeNumber": "C-9", "reMigrate": True},
    )
    request = zuora_request(task)
    assert request.path == "/v1/uno-regenerate/booking-transaction"
    assert request.body == {"type": "DynamicUsageCharge", "chargeNumber": "C-9"}
    assert request.query == {"reMigrate": "true"}
    assert request.headers["Idempotency-Key"] == task.idempotency_key


INVOICE = (
    "account.charges.fixed",
    {"accountId": "A-1/../x", "invoiceDate": "2026-11-01", "targetDate": "2026-11-30"},
)


@pytest.mark.parametrize("account", ["A-1/../x", "..", ".hidden", "A 1", "A?x=1", "a" * 71])
def test_an_account_key_that_could_leave_its_url_segment_is_an_invalid_event(
    account: str,
) -> None:
    data = INVOICE[1] | {"accountId": account}
    raw = json.dumps(
        {"specversion": "1.0", "id": "e", "source": "s", "type": INVOICE[0], "data": data}
    ).encode()
    invalid = parse_event(raw, max_bytes=100_000)
    assert isinstance(invalid, InvalidEvent)
    assert any("accountId" in problem for problem in invalid.problems)


@pytest.mark.parametrize("account", ["8a8082c45f6e2f3f015f6f", "A00000001", "ACME_EU.0042"])
def test_account_ids_and_numbers_go_into_the_path_as_they_are(account: str) -> None:
    task = task_for(INVOICE[0], INVOICE[1] | {"accountId": account})
    request = zuora_request(task, invoice_api="billing-documents")
    assert request.path == f"/v1/accounts/{account}/billing-documents/generate"


def test_invoice_with_action_generate() -> None:
    data = INVOICE[1] | {"accountId": "8a8082c4"}
    request = zuora_request(task_for(INVOICE[0], data))
    assert request.path == "/v1/action/generate"
    assert request.body == {
        "type": "Invoice",
        "objects": [
            {"AccountId": "8a8082c4", "InvoiceDate": "2026-11-01", "TargetDate": "2026-11-30"}
        ],
    }


def test_invoice_with_billing_documents_for_tenants_with_orders() -> None:
    data = INVOICE[1] | {"accountId": "A00000001", "subscriptionIds": ["S1", "S2"]}
    request = zuora_request(task_for(INVOICE[0], data), invoice_api="billing-documents")
    assert request.path == "/v1/accounts/A00000001/billing-documents/generate"
    assert request.body == {
        "effectiveDate": "2026-11-01",
        "targetDate": "2026-11-30",
        "subscriptionIds": ["S1", "S2"],
    }
    without = zuora_request(
        task_for(INVOICE[0], INVOICE[1] | {"accountId": "A00000001"}),
        invoice_api="billing-documents",
    )
    assert "subscriptionIds" not in without.body


async def test_subscription_ids_with_action_generate_are_refused_naming_the_setting() -> None:
    client, _ = client_with(lambda request: token_answer())
    data = INVOICE[1] | {"accountId": "A1", "subscriptionIds": ["S1"]}
    result = await client.attempt(task_for(INVOICE[0], data))
    assert isinstance(result, Failed)
    assert result.reason is FailureReason.REJECTED
    assert "REGEN_ZUORA__INVOICE_API=billing-documents" in result.message


async def test_billing_documents_answers_carry_the_generated_documents() -> None:
    answers = iter(
        [
            {"success": True, "invoices": [{"id": "I1"}], "creditMemos": [{"id": "C1"}]},
            {"success": False, "reasons": [{"code": "53100050", "message": "locked"}]},
            {"success": False, "reasons": [{"code": "53100040", "message": "no account"}]},
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return token_answer()
        assert request.url.path == "/v1/accounts/A1/billing-documents/generate"
        return httpx.Response(200, json=next(answers))

    client, _ = client_with(
        handler, SETTINGS.model_copy(update={"invoice_api": "billing-documents"})
    )
    task = task_for(INVOICE[0], INVOICE[1] | {"accountId": "A1"})
    succeeded = await client.attempt(task)
    assert isinstance(succeeded, Succeeded)
    assert succeeded.upstream == {"invoiceIds": ["I1"], "creditMemoIds": ["C1"]}
    assert isinstance(await client.attempt(task), TransientFailure)
    refused = await client.attempt(task)
    assert isinstance(refused, Failed)
    assert refused.reason is FailureReason.REJECTED


Handler = Callable[[httpx.Request], httpx.Response]


def client_with(
    handler: Handler, settings: ZuoraSettings = SETTINGS
) -> tuple[ZuoraClient, Metrics]:
    metrics = Metrics()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return ZuoraClient(settings, http, ZuoraTokens(settings, http, metrics), metrics), metrics


def token_answer(token: str = "T1") -> httpx.Response:
    return httpx.Response(200, json={"access_token": token, "expires_in": 3600})


BOOKING = ("booking.fixed", {"objectType": "Subscription", "subscriptionId": "S1"})


async def test_success_false_carries_reasons_and_tracking() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return token_answer()
        return httpx.Response(
            200,
            json={
                "success": False,
                "processId": "P1",
                "reasons": [{"code": "53100320", "message": "no"}],
            },
            headers={"Zuora-Request-Id": "R1"},
        )

    client, _ = client_with(handler)
    result = await client.attempt(task_for(*BOOKING))
    assert isinstance(result, Failed)
    assert result.reason is FailureReason.REJECTED
    assert result.details == {
        "reasons": [{"code": "53100320", "message": "no"}],
        "requestId": "R1",
        "processId": "P1",
    }


async def test_unreadable_200_is_transient_and_tried_again_under_a_new_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return token_answer()
        return httpx.Response(200, text="<html>gateway</html>")

    client, _ = client_with(handler)
    assert isinstance(await client.attempt(task_for(*BOOKING)), TransientFailure)


async def test_concurrent_401s_share_one_token_refresh() -> None:
    tokens_issued = 0
    valid = "T1"

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal tokens_issued, valid
        if request.url.path == "/oauth/token":
            tokens_issued += 1
            await asyncio.sleep(0.01)
            valid = f"T{tokens_issued}"
            return token_answer(valid)
        if request.headers["Authorization"] != f"Bearer {valid}":
            return httpx.Response(401, json={"success": False})
        return httpx.Response(200, json={"success": True, "idList": ["x"]})

    metrics = Metrics()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    tokens = ZuoraTokens(SETTINGS, http, metrics)
    client = ZuoraClient(SETTINGS, http, tokens, metrics)
    assert isinstance(await client.attempt(task_for(*BOOKING)), Succeeded)
    valid = "revoked-by-zuora"  # every cached token is now refused

    results = await asyncio.gather(*(client.attempt(task_for(*BOOKING)) for _ in range(50)))

    assert all(isinstance(result, Succeeded) for result in results)
    assert tokens_issued == 2


async def test_bad_client_credentials_are_a_permanent_unauthorized() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": "invalid_client"})

    client, metrics = client_with(handler)
    result = await client.attempt(task_for(*BOOKING))
    assert isinstance(result, Failed)
    assert result.reason is FailureReason.UNAUTHORIZED
    assert metrics.token_refreshes.labels("failure")._value.get() == 1


async def test_token_endpoint_overload_is_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3"})

    client, _ = client_with(handler)
    assert isinstance(await client.attempt(task_for(*BOOKING)), TransientFailure)


async def test_network_failure_is_transient_and_secret_is_not_in_the_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, _ = client_with(handler)
    result = await client.attempt(task_for(*BOOKING))
    assert isinstance(result, TransientFailure)
    assert "real-secret" not in result.message
