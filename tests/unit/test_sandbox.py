"""The upstream sandbox: its simulated contracts, its knobs, and serving it over real HTTP."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from regen_sync_sandbox import SandboxConfig, create_app, serve

CONFIG = SandboxConfig(client_id="cid", client_secret="secret", api_token="s1-token")
CREDENTIALS = {"client_id": "cid", "client_secret": "secret", "grant_type": "client_credentials"}
BILLING = "/v1/uno-regenerate/billing-transaction"
BOOKING = "/v1/uno-regenerate/booking-transaction"
INVOICE = "/v1/action/generate"
INVOICE_BODY: dict[str, Any] = {
    "type": "Invoice",
    "objects": [{"AccountId": "A-1", "InvoiceDate": "2024-05-01", "TargetDate": "2024-05-31"}],
}
S1_AUTH = {"Authorization": "Bearer s1-token"}
HEX32 = re.compile(r"[0-9a-f]{32}")


def _client(config: SandboxConfig = CONFIG) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(config))
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with _client() as client:
        yield client


async def _auth(client: httpx.AsyncClient) -> dict[str, str]:
    response = await client.post("/oauth/token", data=CREDENTIALS)
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def auth(client: httpx.AsyncClient) -> dict[str, str]:
    return await _auth(client)


async def _add_fault(client: httpx.AsyncClient, **rule: Any) -> str:
    response = await client.post("/_sandbox/faults", json=rule)
    assert response.status_code == 201, response.text
    fault_id: str = response.json()["id"]
    return fault_id


async def _log(client: httpx.AsyncClient, operation: str | None = None) -> list[dict[str, Any]]:
    params = {} if operation is None else {"operation": operation}
    response = await client.get("/_sandbox/requests", params=params)
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()
    return entries


def _reason_code(response: httpx.Response) -> str:
    code: str = response.json()["reasons"][0]["code"]
    return code


# --- OAuth ---------------------------------------------------------------------------------------


async def test_token_is_issued_for_the_configured_client(client: httpx.AsyncClient) -> None:
    response = await client.post("/oauth/token", data=CREDENTIALS)

    assert response.status_code == 200
    token = response.json()
    assert token["token_type"] == "bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "entity.x"
    assert token["jti"]
    call = await client.post(
        BILLING,
        json={"type": "Invoice", "id": "i-1"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert call.json()["success"] is True


@pytest.mark.parametrize(
    ("form", "status", "error"),
    [
        ({**CREDENTIALS, "client_secret": "wrong"}, 401, "invalid_client"),
        ({**CREDENTIALS, "client_id": "other"}, 401, "invalid_client"),
        ({**CREDENTIALS, "grant_type": "password"}, 400, "unsupported_grant_type"),
    ],
)
async def test_token_is_refused_for_bad_credentials_or_grant(
    client: httpx.AsyncClient, form: dict[str, str], status: int, error: str
) -> None:
    response = await client.post("/oauth/token", data=form)

    assert response.status_code == status
    assert response.json() == {"error": error}


async def test_zuora_call_without_valid_token_is_unauthorized(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer made-up"}):
        response = await client.post(BILLING, json={"type": "Invoice", "id": "i"}, headers=headers)

        assert response.status_code == 401
        assert response.json() == {
            "success": False,
            "reasons": [{"code": "90000011", "message": "Authentication error"}],
        }


async def test_revoked_tokens_are_unauthorized(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"type": "Invoice", "id": "i-1"}
    assert (await client.post(BILLING, json=body, headers=auth)).status_code == 200

    assert (await client.post("/_sandbox/revoke-tokens")).status_code == 204
    response = await client.post(BILLING, json=body, headers=auth)

    assert response.status_code == 401
    assert _reason_code(response) == "90000011"


# --- regenerate billing / booking --------------------------------------------------------------


async def test_billing_success_has_ids_derived_from_the_document(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    first = (await client.post(BILLING, json={"type": "Invoice", "id": "i-1"}, headers=auth)).json()
    again = (await client.post(BILLING, json={"type": "Invoice", "id": "i-1"}, headers=auth)).json()
    alias = await client.post(BILLING, json={"type": "Invoice", "documentId": "i-1"}, headers=auth)
    other = await client.post(BILLING, json={"type": "CreditMemo", "number": "CM-1"}, headers=auth)

    assert first["success"] is True
    assert len(first["idList"]) == 2
    assert all(HEX32.fullmatch(i) for i in first["idList"])
    assert first["idList"][0] != first["idList"][1]
    assert HEX32.fullmatch(first["requestId"])
    assert again["idList"] == first["idList"]
    assert again["requestId"] != first["requestId"]
    assert alias.json()["idList"] == first["idList"]
    assert other.json()["success"] is True
    assert other.json()["idList"] != first["idList"]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "Subscription", "subscriptionName": "S-1", "subscriptionVersion": 3},
        {"type": "Subscription", "subscriptionId": "8a8a"},
        {"type": "OrderLineItem", "orderLineItemId": "oli-1"},
        {"type": "OrderLineItem", "orderNumber": "O-1", "itemNumber": "1"},
        {"type": "DynamicUsageCharge", "ratePlanChargeId": "rpc-1"},
        {"type": "DynamicUsageCharge", "chargeNumber": "C-1"},
    ],
)
async def test_booking_success_for_each_identifier_form(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, Any]
) -> None:
    response = await client.post(BOOKING, json=body, params={"reMigrate": "true"}, headers=auth)

    assert response.status_code == 200
    assert response.json()["success"] is True
    assert all(HEX32.fullmatch(i) for i in response.json()["idList"])


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (BILLING, {"type": "Invoice"}),
        (BILLING, {"type": "Payment", "id": "p-1"}),
        (BILLING, ["not", "an", "object"]),
        (BOOKING, {"type": "Subscription", "subscriptionName": "S-1", "subscriptionVersion": "3"}),
        (BOOKING, {"type": "OrderLineItem", "orderNumber": "O-1"}),
        (BOOKING, {"type": "DynamicUsageCharge"}),
        (BOOKING, {"type": "Invoice", "id": "i-1"}),
    ],
)
async def test_invalid_regenerate_body_is_answered_success_false(
    client: httpx.AsyncClient, auth: dict[str, str], path: str, body: Any
) -> None:
    response = await client.post(path, json=body, headers=auth)

    assert response.status_code == 200
    assert response.json()["success"] is False
    assert response.json()["processId"]
    assert _reason_code(response) == "53100020"


@pytest.mark.parametrize("path", [BILLING, BOOKING])
async def test_only_resend_with_remigrate_is_refused(
    client: httpx.AsyncClient, auth: dict[str, str], path: str
) -> None:
    body = {"type": "Invoice", "id": "i-1"} if path == BILLING else {"type": "Subscription"}
    response = await client.post(
        path, json=body, params={"onlyReSend": "true", "reMigrate": "true"}, headers=auth
    )

    assert response.status_code == 200
    assert response.json()["success"] is False
    assert response.json()["reasons"] == [
        {"code": "53100020", "message": "onlyReSend and reMigrate cannot both be true"}
    ]


async def test_zuora_responses_carry_request_track_and_limit_headers(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        BILLING,
        json={"type": "Invoice", "id": "i-1"},
        headers={**auth, "Zuora-Track-Id": "track-7"},
    )

    assert uuid.UUID(response.headers["Zuora-Request-Id"])
    assert response.headers["Zuora-Track-Id"] == "track-7"
    assert response.headers["Concurrency-Limit-Type"] == "Default"
    assert response.headers["Concurrency-Limit-Limit"] == "40"
    # The request itself is still in flight while it is answered.
    assert response.headers["Concurrency-Limit-Remaining"] == "39"
    for name in ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"):
        assert response.headers[name]


# --- invoice generation and journals -----------------------------------------------------------


async def test_invoice_generation_answers_per_object(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    good = INVOICE_BODY["objects"][0]
    body = {"type": "Invoice", "objects": [good, {**good, "TargetDate": "2024-02-30"}]}

    first = await client.post(INVOICE, json=body, headers=auth)
    again = await client.post(INVOICE, json=INVOICE_BODY, headers=auth)

    assert first.status_code == 200
    ok, bad = first.json()
    assert ok["Success"] is True
    assert HEX32.fullmatch(ok["Id"])
    assert again.json() == [ok]
    assert bad == {
        "Success": False,
        "Errors": [{"Code": "INVALID_VALUE", "Message": "TargetDate must be a YYYY-MM-DD date"}],
    }


async def test_invoice_generation_refuses_other_types(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post(INVOICE, json={**INVOICE_BODY, "type": "Bill"}, headers=auth)

    assert response.status_code == 200
    assert response.json()[0]["Success"] is False
    assert response.json()[0]["Errors"][0]["Code"] == "INVALID_VALUE"


async def test_journal_regeneration_counts_revisions_and_merges_body(
    client: httpx.AsyncClient,
) -> None:
    path = "/public/v1/billing/journals/BJO-1/regenerate"

    first = await client.post(path, json={}, headers=S1_AUTH)
    second = await client.post(
        path, json={"id": "ignored", "externalIds": {"vendor": "v-1"}}, headers=S1_AUTH
    )

    assert first.status_code == 200
    assert first.json() == {
        "id": "BJO-1",
        "name": "Journal BJO-1",
        "status": "Validating",
        "revision": 1,
    }
    assert second.json()["id"] == "BJO-1"
    assert second.json()["revision"] == 2
    assert second.json()["externalIds"] == {"vendor": "v-1"}


@pytest.mark.parametrize(
    ("journal_id", "headers", "status", "title", "section"),
    [
        ("BJO-1", {"Authorization": "Bearer wrong"}, 403, "Forbidden", "15.5.4"),
        ("BJO-1", {}, 403, "Forbidden", "15.5.4"),
        ("missing-BJO-2", S1_AUTH, 404, "Not Found", "15.5.5"),
    ],
)
async def test_journal_errors_are_problem_details(
    client: httpx.AsyncClient,
    journal_id: str,
    headers: dict[str, str],
    status: int,
    title: str,
    section: str,
) -> None:
    response = await client.post(
        f"/public/v1/billing/journals/{journal_id}/regenerate", json={}, headers=headers
    )

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == f"https://tools.ietf.org/html/rfc9110#section-{section}"
    assert problem["title"] == title
    assert problem["status"] == status
    assert problem["detail"]
    assert re.fullmatch(r"[0-9a-f]+", problem["traceId"])


# --- Idempotency-Key ---------------------------------------------------------------------------


async def test_idempotent_request_is_replayed_verbatim_and_logged(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "k-1"}
    first = await client.post(BILLING, json={"type": "Invoice", "id": "i-1"}, headers=headers)
    replay = await client.post(BILLING, json={"type": "Invoice", "id": "i-1"}, headers=headers)

    assert replay.status_code == first.status_code == 200
    assert replay.content == first.content
    assert replay.headers["Zuora-Request-Id"] == first.headers["Zuora-Request-Id"]
    assert [e["replayed"] for e in await _log(client, "billing")] == [False, True]
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["idempotencyKeys"] == {"distinct": 1}


async def test_same_key_in_progress_is_a_conflict(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.put("/_sandbox/latency", json={"ms": 200, "operation": "billing"})
    headers = {**auth, "Idempotency-Key": "k-busy"}
    body = {"type": "Invoice", "id": "i-1"}

    responses = await asyncio.gather(
        client.post(BILLING, json=body, headers=headers),
        client.post(BILLING, json=body, headers=headers),
    )

    assert sorted(r.status_code for r in responses) == [200, 409]
    conflict = next(r for r in responses if r.status_code == 409)
    assert conflict.json()["success"] is False
    assert _reason_code(conflict) == "50000050"
    accepted = next(e for e in await _log(client) if e["status"] == 200 and e["path"] == BILLING)
    assert accepted["answered_at"] - accepted["received_at"] >= 0.2


async def test_key_reused_on_another_path_is_unprocessable(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    headers = {**auth, "Idempotency-Key": "k-shared"}
    await client.post(BILLING, json={"type": "Invoice", "id": "i-1"}, headers=headers)

    response = await client.post(INVOICE, json=INVOICE_BODY, headers=headers)

    assert response.status_code == 422
    assert response.json()["success"] is False
    assert _reason_code(response) == "53100022"


# --- fault injection ---------------------------------------------------------------------------


async def test_a_refusal_before_processing_is_not_stored_for_the_key(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    fault_id = await _add_fault(client, operation="billing", kind="status", status=503, times=2)
    headers = {**auth, "Idempotency-Key": "k-retry"}
    body = {"type": "Invoice", "id": "i-1"}

    responses = [await client.post(BILLING, json=body, headers=headers) for _ in range(3)]

    assert [r.status_code for r in responses] == [503, 503, 200]
    assert _reason_code(responses[0]) == "50000099"
    assert responses[2].json()["success"] is True
    log = await _log(client, "billing")
    assert [(e["status"], e["fault"], e["replayed"]) for e in log] == [
        (503, fault_id, False),
        (503, fault_id, False),
        (200, None, False),
    ]


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "success_false", "code": "53100050"},  # lock competition: transient, yet stored
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 404},
    ],
    ids=["success-false", "500", "404"],
)
async def test_every_processed_answer_is_stored_and_replayed_for_its_key(
    client: httpx.AsyncClient, auth: dict[str, str], fault: dict[str, object]
) -> None:
    await _add_fault(client, operation="billing", times=1, **fault)
    body = {"type": "Invoice", "id": "i-1"}

    first = await client.post(BILLING, json=body, headers={**auth, "Idempotency-Key": "k-1"})
    again = await client.post(BILLING, json=body, headers={**auth, "Idempotency-Key": "k-1"})
    fresh = await client.post(BILLING, json=body, headers={**auth, "Idempotency-Key": "k-2"})

    assert first.status_code != 200 or first.json()["success"] is False
    assert again.status_code == first.status_code
    assert again.content == first.content, "the stored answer, not a new processing"
    assert fresh.status_code == 200
    assert fresh.json()["success"] is True, "a new key is processed afresh"
    assert [e["replayed"] for e in await _log(client, "billing")] == [False, True, False]


async def test_a_gateway_timeout_stands_for_a_processed_request_whose_answer_was_lost(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(client, operation="billing", kind="status", status=504, times=1)
    headers = {**auth, "Idempotency-Key": "k-lost"}
    body = {"type": "Invoice", "id": "i-1"}

    lost = await client.post(BILLING, json=body, headers=headers)
    again = await client.post(BILLING, json=body, headers=headers)

    assert lost.status_code == 504
    assert again.status_code == 200
    assert again.json()["success"] is True
    assert [e["replayed"] for e in await _log(client, "billing")] == [False, True]


async def test_the_store_can_be_turned_off_for_experiments() -> None:
    async with _client(CONFIG.model_copy(update={"idempotency_store": False})) as client:
        auth = await _auth(client)
        await _add_fault(client, operation="billing", kind="status", status=500, times=1)
        headers = {**auth, "Idempotency-Key": "k-1"}
        body = {"type": "Invoice", "id": "i-1"}

        statuses = [(await client.post(BILLING, json=body, headers=headers)).status_code]
        statuses.append((await client.post(BILLING, json=body, headers=headers)).status_code)

        assert statuses == [500, 200]


async def test_429_fault_carries_retry_after(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(client, operation="*", kind="status", status=429, retryAfter=2, times=1)

    response = await client.post(INVOICE, json=INVOICE_BODY, headers=auth)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert _reason_code(response) == "50000070"
    assert response.headers["Zuora-Request-Id"]


async def test_success_false_fault_uses_each_operations_body(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(client, operation="booking", kind="success_false", code="53100320", times=1)
    await _add_fault(client, operation="invoice", kind="success_false", code="LOCK_COMPETITION")
    body = {"type": "Subscription", "subscriptionId": "s-1"}

    booking = await client.post(BOOKING, json=body, headers=auth)
    invoice = await client.post(INVOICE, json=INVOICE_BODY, headers=auth)

    assert booking.status_code == 200
    assert booking.json()["success"] is False
    assert booking.json()["processId"]
    assert _reason_code(booking) == "53100320"
    assert invoice.status_code == 200
    assert invoice.json()[0]["Success"] is False
    assert invoice.json()[0]["Errors"][0]["Code"] == "LOCK_COMPETITION"
    assert (await client.post(BOOKING, json=body, headers=auth)).json()["success"] is True


async def test_fault_with_match_only_hits_matching_requests(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(client, operation="billing", kind="status", status=500, match="INV-2")

    other = await client.post(BILLING, json={"type": "Invoice", "number": "INV-1"}, headers=auth)
    hit = await client.post(BILLING, json={"type": "Invoice", "number": "INV-2"}, headers=auth)

    assert other.status_code == 200
    assert hit.status_code == 500


async def test_journal_status_fault_is_problem_details(client: httpx.AsyncClient) -> None:
    await _add_fault(client, operation="journal", kind="status", status=502, message="upstream")

    response = await client.post(
        "/public/v1/billing/journals/BJO-1/regenerate", json={}, headers=S1_AUTH
    )

    assert response.status_code == 502
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["title"] == "Bad Gateway"
    assert response.json()["detail"] == "upstream"


@pytest.mark.parametrize(
    "rule",
    [
        {"operation": "journal", "kind": "success_false"},
        {"operation": "billing", "kind": "status"},
        {"operation": "billing", "kind": "status", "status": 499},
        {"operation": "billing", "kind": "latency", "latencyMs": 10, "retryAfter": 1},
        {"operation": "payments", "kind": "latency", "latencyMs": 10},
    ],
)
async def test_invalid_fault_rule_is_refused(
    client: httpx.AsyncClient, rule: dict[str, Any]
) -> None:
    response = await client.post("/_sandbox/faults", json=rule)

    assert response.status_code == 422
    assert response.json()["details"]


# --- concurrency, log, stats, reset ------------------------------------------------------------


async def test_concurrency_limit_answers_429_when_exceeded() -> None:
    async with _client(CONFIG.model_copy(update={"concurrency_limit": 2})) as client:
        auth = await _auth(client)
        await client.put("/_sandbox/latency", json={"ms": 200})
        bodies = [{"type": "Invoice", "id": f"i-{n}"} for n in range(3)]

        responses = await asyncio.gather(
            *(client.post(BILLING, json=body, headers=auth) for body in bodies)
        )

        assert sorted(r.status_code for r in responses) == [200, 200, 429]
        rejected = next(r for r in responses if r.status_code == 429)
        assert rejected.headers["Retry-After"] == "1"
        assert rejected.headers["Concurrency-Limit-Remaining"] == "0"
        assert _reason_code(rejected) == "50000070"
        stats = (await client.get("/_sandbox/stats")).json()
        assert stats["maxConcurrent"]["billing"] == 2
        assert stats["zuoraMaxConcurrent"] == 2
        assert stats["zuoraRefusedForConcurrency"] == 1
        assert stats["requests"]["billing"] == 3


async def test_request_log_records_what_was_sent(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.post(
        BILLING,
        json={"type": "Invoice", "id": "i-1"},
        params={"onlyReSend": "true"},
        headers={**auth, "Zuora-Track-Id": "t-1"},
    )

    token, billing = await _log(client)
    assert token["operation"] == "token"
    assert token["body"] == CREDENTIALS
    assert token["status"] == 200
    assert billing["seq"] == token["seq"] + 1
    assert billing["operation"] == "billing"
    assert billing["method"] == "POST"
    assert billing["path"] == BILLING
    assert billing["query"] == {"onlyReSend": "true"}
    assert billing["headers"]["authorization"] == auth["Authorization"]
    assert billing["headers"]["zuora-track-id"] == "t-1"
    assert billing["body"] == {"type": "Invoice", "id": "i-1"}
    assert billing["status"] == 200
    assert billing["replayed"] is False
    assert billing["fault"] is None
    assert billing["answered_at"] >= billing["received_at"]
    assert [e["operation"] for e in await _log(client, "billing")] == ["billing"]

    assert (await client.delete("/_sandbox/requests")).status_code == 204
    assert await _log(client) == []


async def test_unknown_log_filter_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/_sandbox/requests", params={"operation": "payments"})

    assert response.status_code == 400


async def test_reset_clears_log_faults_latency_tokens_and_keys(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await client.post(
        BILLING, json={"type": "Invoice", "id": "i-1"}, headers={**auth, "Idempotency-Key": "k"}
    )
    await _add_fault(client, operation="*", kind="status", status=500)
    await client.put("/_sandbox/latency", json={"ms": 5000})

    assert (await client.post("/_sandbox/reset")).status_code == 204

    assert await _log(client) == []
    stats = (await client.get("/_sandbox/stats")).json()
    assert stats["requests"]["billing"] == 0
    assert stats["idempotencyKeys"] == {"distinct": 0}
    unauthorized = await client.post(BILLING, json={"type": "Invoice", "id": "i-1"}, headers=auth)
    assert unauthorized.status_code == 401
    fresh = await client.post(
        BILLING,
        json={"type": "Invoice", "id": "i-1"},
        headers={**await _auth(client), "Idempotency-Key": "k"},
    )
    assert fresh.status_code == 200
    assert fresh.json()["success"] is True
    assert [e["replayed"] for e in await _log(client, "billing")] == [False, False]


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/_sandbox/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


# --- the real server -----------------------------------------------------------------------------


async def test_serve_answers_real_http_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = asyncio.create_task(serve(CONFIG.model_copy(update={"port": 0})))
    announcement = re.compile(r"sandbox listening on (\S+)")
    async with asyncio.timeout(10):
        # serve() announces readiness only on stdout, so poll what the test captured.
        while (found := announcement.search(capsys.readouterr().out)) is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    url = found.group(1)
    assert url.startswith("http://127.0.0.1:")

    async with httpx.AsyncClient(base_url=url) as http:
        token = (await http.post("/oauth/token", data=CREDENTIALS)).json()["access_token"]
        response = await http.post(
            BILLING,
            json={"type": "Invoice", "id": "i-1"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200
    assert response.json()["success"] is True

    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    async with httpx.AsyncClient(base_url=url) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/_sandbox/health")


# --- billing-documents/generate ----------------------------------------------------------------

BILLING_DOCUMENTS = "/v1/accounts/{}/billing-documents/generate"


async def test_billing_documents_generate_answers_the_accounts_documents(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    body = {"effectiveDate": "2026-11-01", "targetDate": "2026-11-30", "subscriptionIds": ["S1"]}

    response = await client.post(BILLING_DOCUMENTS.format("A00001"), json=body, headers=auth)

    assert response.status_code == 200
    answer = response.json()
    assert answer["success"] is True
    assert [len(answer["invoices"]), len(answer["creditMemos"])] == [1, 1]
    assert (await _log(client, "invoice"))[-1]["path"] == BILLING_DOCUMENTS.format("A00001")


@pytest.mark.parametrize(
    ("account", "body", "code"),
    [
        ("A1", {"targetDate": "2026-11-30"}, "53100020"),
        ("A1", {"effectiveDate": "2026-11-01", "targetDate": "30/11/2026"}, "53100020"),
        (
            "A1",
            {"effectiveDate": "2026-11-01", "targetDate": "2026-11-30", "subscriptionIds": "S1"},
            "53100020",
        ),
        ("missing-A1", {"effectiveDate": "2026-11-01", "targetDate": "2026-11-30"}, "53100040"),
    ],
    ids=["no-effective-date", "bad-date", "ids-not-a-list", "no-such-account"],
)
async def test_billing_documents_generate_refuses_with_success_false(
    client: httpx.AsyncClient, auth: dict[str, str], account: str, body: dict[str, Any], code: str
) -> None:
    response = await client.post(BILLING_DOCUMENTS.format(account), json=body, headers=auth)

    assert response.status_code == 200
    assert response.json()["success"] is False
    assert _reason_code(response) == code


async def test_an_injected_success_false_takes_the_shape_of_the_route(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    await _add_fault(client, operation="invoice", kind="success_false", code="53100050")
    body = {"effectiveDate": "2026-11-01", "targetDate": "2026-11-30"}

    modern = await client.post(BILLING_DOCUMENTS.format("A1"), json=body, headers=auth)
    older = await client.post(INVOICE, json=INVOICE_BODY, headers=auth)

    assert modern.json()["success"] is False
    assert _reason_code(modern) == "53100050"
    assert older.json()[0]["Success"] is False
