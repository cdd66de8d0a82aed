"""Zuora: regenerate billing / booking transactions and generate an invoice.

Every call carries the attempt's Idempotency-Key (see ``RegenerationTask``), so Zuora applies
an attempt once however often it is sent; that is what makes repeating a request whose answer
was lost safe here. Invoices are generated with ``POST /v1/action/generate`` or, on tenants
with Orders or Invoice Settlement, ``POST /v1/accounts/{key}/billing-documents/generate``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx

from regen_sync.config import ZuoraSettings
from regen_sync.domain import (
    AccountChargesFixed,
    AttemptResult,
    BillingDocumentFixed,
    BookingFixed,
    Failed,
    FailureReason,
    JournalFixed,
    Operation,
    RegenerationTask,
    Succeeded,
    TransientFailure,
)
from regen_sync.domain.events import RegenerationFlags, ZuoraScope
from regen_sync.domain.outcomes import classify_http_error, classify_zuora_refusal
from regen_sync.observability import Metrics
from regen_sync.upstream.http import (
    error_details,
    json_body,
    retry_after_seconds,
    timed_post,
    with_load,
)
from regen_sync.upstream.zuora_auth import TokenUnavailable, ZuoraTokens

_TRACK_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._~!#$%&*+^`|/=?@-]")
_BOOKING_IDENTIFIERS = (
    "subscriptionName",
    "subscriptionVersion",
    "subscriptionId",
    "orderLineItemId",
    "orderNumber",
    "itemNumber",
    "ratePlanChargeId",
    "chargeNumber",
)


@dataclass(frozen=True, slots=True)
class ZuoraRequest:
    path: str
    body: Any
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def track_id(event_id: str) -> str:
    """Zuora-Track-Id: at most 64 US-ASCII characters, none of : ; " '."""
    return _TRACK_ID_UNSAFE.sub("_", event_id)[:64]


InvoiceApi = Literal["action-generate", "billing-documents"]


class NotExpressible(ValueError):
    """The event asks for something the configured API cannot express."""


def zuora_request(
    task: RegenerationTask,
    *,
    billing_id_field: Literal["id", "documentId"] = "id",
    invoice_api: InvoiceApi = "action-generate",
) -> ZuoraRequest:
    """The HTTP request a task becomes. Pure, so the exact wire format is unit-tested."""
    match task.event:
        case BillingDocumentFixed(data=data):
            body: Any = {"type": data.documentType}
            if data.documentId is not None:
                body[billing_id_field] = data.documentId
            if data.documentNumber is not None:
                body["number"] = data.documentNumber
            path, query = "/v1/uno-regenerate/billing-transaction", _flags(data)
            scope: ZuoraScope = data
        case BookingFixed(data=data):
            body = {"type": data.objectType} | {
                name: getattr(data, name)
                for name in _BOOKING_IDENTIFIERS
                if getattr(data, name) is not None
            }
            path, query, scope = "/v1/uno-regenerate/booking-transaction", _flags(data), data
        case AccountChargesFixed(data=data) if invoice_api == "billing-documents":
            body = {
                "effectiveDate": data.invoiceDate.isoformat(),
                "targetDate": data.targetDate.isoformat(),
            }
            if data.subscriptionIds is not None:
                body["subscriptionIds"] = list(data.subscriptionIds)
            account = quote(data.accountId, safe="")
            path, query, scope = f"/v1/accounts/{account}/billing-documents/generate", {}, data
        case AccountChargesFixed(data=data):
            if data.subscriptionIds is not None:
                raise NotExpressible(
                    "subscriptionIds need REGEN_ZUORA__INVOICE_API=billing-documents: "
                    "action/generate cannot limit an invoice to subscriptions"
                )
            body = {
                "type": "Invoice",
                "objects": [
                    {
                        "AccountId": data.accountId,
                        "InvoiceDate": data.invoiceDate.isoformat(),
                        "TargetDate": data.targetDate.isoformat(),
                    }
                ],
            }
            path, query, scope = "/v1/action/generate", {}, data
        case JournalFixed():
            raise ValueError(f"{task.operation} is not a Zuora operation")
    headers = {"Idempotency-Key": task.idempotency_key, "Zuora-Track-Id": track_id(task.event.id)}
    return ZuoraRequest(path, body, query, headers | _scope_headers(scope))


def _flags(flags: RegenerationFlags) -> dict[str, str]:
    query = {}
    if flags.onlyReSend is not None:
        query["onlyReSend"] = str(flags.onlyReSend).lower()
    if flags.reMigrate is not None:
        query["reMigrate"] = str(flags.reMigrate).lower()
    return query


def _scope_headers(scope: ZuoraScope) -> dict[str, str]:
    headers = {}
    if scope.entityId:
        headers["Zuora-Entity-Ids"] = scope.entityId
    if scope.orgIds:
        headers["Zuora-Org-Ids"] = ",".join(scope.orgIds)
    return headers


def interpret_answer(operation: Operation, response: httpx.Response) -> AttemptResult:
    """Classify Zuora's answer: a 200 can still be a failure (success:false)."""
    status = response.status_code
    if not 200 <= status < 300:
        return classify_http_error(
            status,
            error_details(response),
            idempotent=True,
            retry_after_seconds=retry_after_seconds(response),
        )
    body = json_body(response)
    tracking = _tracking(response, body)
    if operation is Operation.GENERATE_INVOICE and isinstance(body, list):
        return _interpret_generate(status, body, tracking)
    if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
        # An answer, so Zuora stored it: the next attempt goes out under a new key.
        return TransientFailure("Zuora answered 200 with an unreadable body", status)
    if body["success"] and operation is Operation.GENERATE_INVOICE:
        return Succeeded(
            {
                "invoiceIds": _ids(body.get("invoices")),
                "creditMemoIds": _ids(body.get("creditMemos")),
            }
            | tracking
        )
    if body["success"]:
        return Succeeded({"idList": list(body.get("idList") or [])} | tracking)
    reasons = _list(body.get("reasons"))
    codes = [reason.get("code") for reason in reasons if isinstance(reason, dict)]
    return classify_zuora_refusal(
        codes,
        _messages(reasons, "message") or "Zuora answered success: false",
        {"reasons": reasons} | tracking,
        status,
    )


def _interpret_generate(status: int, body: Any, tracking: dict[str, Any]) -> AttemptResult:
    first = body[0] if isinstance(body, list) and body and isinstance(body[0], dict) else None
    if first is None or not isinstance(first.get("Success"), bool):
        return TransientFailure("Zuora answered 200 with an unreadable body", status)
    if first["Success"]:
        return Succeeded({"invoiceId": first.get("Id")} | tracking)
    errors = _list(first.get("Errors"))
    codes = [error.get("Code") for error in errors if isinstance(error, dict)]
    return classify_zuora_refusal(
        codes,
        _messages(errors, "Message") or "Zuora answered Success: false",
        {"Errors": errors} | tracking,
        status,
    )


def _ids(documents: Any) -> list[Any]:
    """The ids of billing-documents/generate's generated invoices or credit memos."""
    return [item["id"] for item in _list(documents) if isinstance(item, dict) and "id" in item]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _messages(items: list[Any], key: str) -> str:
    return "; ".join(str(item.get(key)) for item in items if isinstance(item, dict))[:1000]


def _tracking(response: httpx.Response, body: Any) -> dict[str, Any]:
    found = {
        "requestId": (body.get("requestId") if isinstance(body, dict) else None)
        or response.headers.get("zuora-request-id"),
        "trackId": response.headers.get("zuora-track-id"),
        "processId": body.get("processId") if isinstance(body, dict) else None,
    }
    return {key: value for key, value in found.items() if value}


class ZuoraClient:
    def __init__(
        self,
        settings: ZuoraSettings,
        http: httpx.AsyncClient,
        tokens: ZuoraTokens,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._base_url = str(settings.base_url).rstrip("/")
        self._http = http
        self._tokens = tokens
        self._metrics = metrics

    async def attempt(self, task: RegenerationTask) -> AttemptResult:
        try:
            request = zuora_request(
                task,
                billing_id_field=self._settings.billing_id_field,
                invoice_api=self._settings.invoice_api,
            )
        except NotExpressible as error:
            return Failed(FailureReason.REJECTED, str(error))
        try:
            token = await self._tokens.bearer()
            response = await self._send(task, request, token)
            if response.status_code == 401:
                # The token may have been revoked or expired early: one fresh token, one retry.
                self._tokens.invalidate(token)
                response = await self._send(task, request, await self._tokens.bearer())
        except TokenUnavailable as error:
            if error.transient:
                return TransientFailure(str(error), error.http_status)
            return Failed(FailureReason.UNAUTHORIZED, str(error), http_status=error.http_status)
        except httpx.TransportError as error:
            return TransientFailure(f"no answer from Zuora: {type(error).__name__}")
        return with_load(interpret_answer(task.operation, response), response)

    async def _send(
        self, task: RegenerationTask, request: ZuoraRequest, token: str
    ) -> httpx.Response:
        return await timed_post(
            self._http,
            self._base_url + request.path,
            metrics=self._metrics,
            task=task,
            params=request.query,
            json=request.body,
            headers=request.headers | {"Authorization": f"Bearer {token}"},
        )
