"""The sandbox ASGI app: simulated Zuora and SoftwareOne upstreams plus the /_sandbox control API.

Every upstream route goes through one wrapper (`_upstream`) that logs the request, accounts for
concurrency, checks credentials, injects faults, applies latency and handles Idempotency-Key, so
each route handler only holds its own API's contract.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import re
import secrets
import time
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from regen_sync_sandbox.faults import (
    FAULT_RULE,
    OPERATIONS,
    ZUORA_OPERATIONS,
    Fault,
    FaultBook,
    FaultRule,
    LatencyFault,
    Operation,
    SuccessFalseFault,
)

if TYPE_CHECKING:
    from regen_sync_sandbox.server import SandboxConfig

# Bounds that keep a long benchmark from exhausting memory.
LOG_LIMIT = 200_000
IDEMPOTENCY_LIMIT = 200_000
MAX_BODY_BYTES = 1024 * 1024

# Zuora reason codes: eight digits, the last two name the category of the error.
AUTHENTICATION_ERROR = "90000011"
INVALID_VALUE = "53100020"
NOT_FOUND = "53100040"
KEY_REUSED = "53100022"
IN_PROGRESS = "50000050"
LIMIT_EXCEEDED = "50000070"
INTERNAL_ERROR = "50000099"
# Turned away before any work: Zuora stores nothing under the Idempotency-Key for these.
_REFUSED_BEFORE_PROCESSING = frozenset({401, 409, 429, 502, 503})
# A gateway timeout: the request was processed, only its answer did not come back.
_ANSWER_LOST = 504
_CATEGORY_BY_STATUS = {401: "11", 403: "10", 404: "40", 409: "50", 429: "70"}

_RATE_LIMIT_HEADERS = {
    "ratelimit-limit": "40000",
    "ratelimit-remaining": "39999",
    "ratelimit-reset": "3600",
}

_RFC9110 = "https://tools.ietf.org/html/rfc9110#section-"
_PROBLEM_TYPES = {
    400: _RFC9110 + "15.5.1",
    401: _RFC9110 + "15.5.2",
    403: _RFC9110 + "15.5.4",
    404: _RFC9110 + "15.5.5",
    409: _RFC9110 + "15.5.10",
    422: _RFC9110 + "15.5.21",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: _RFC9110 + "15.6.1",
    502: _RFC9110 + "15.6.3",
    503: _RFC9110 + "15.6.4",
    504: _RFC9110 + "15.6.5",
}

_BILLING_TYPES = ("Invoice", "CreditMemo", "DebitMemo", "InvoiceItemAdjustment")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Answer:
    """A response as the sandbox decided it, kept whole so Idempotency-Key replays are verbatim."""

    status: int
    body: bytes
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def with_headers(self, headers: dict[str, str]) -> Answer:
        return dataclasses.replace(self, headers={**self.headers, **headers})

    def to_response(self) -> Response:
        return Response(self.body, self.status, self.headers, self.media_type)


@dataclass(frozen=True)
class Call:
    """What an upstream handler sees of a request."""

    path_params: dict[str, str]
    query: dict[str, str]
    body: Any


Handler = Callable[["SandboxState", Call], Answer]


@dataclass
class LoggedRequest:
    seq: int
    operation: Operation
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    received_at: float
    status: int | None = None
    replayed: bool = False
    fault: str | None = None
    answered_at: float | None = None


class IdempotencyStore:
    """Completed Zuora answers by Idempotency-Key, and the keys still being processed."""

    def __init__(self) -> None:
        self._done: OrderedDict[str, tuple[str, Answer]] = OrderedDict()
        self._busy: dict[str, str] = {}
        self.distinct = 0

    def claim(self, key: str, route: str) -> tuple[Answer | None, bool]:
        """The answer to send instead of processing, and whether it is a replay.

        `(None, False)` means the caller now owns the key and must `release` it.
        """
        done = self._done.get(key)
        owner = done[0] if done is not None else self._busy.get(key)
        if owner is None:
            self._busy[key] = route
            self.distinct += 1
            return None, False
        if owner != route:
            message = f"Idempotency-Key was already used for {owner}"
            return _zuora_error(422, KEY_REUSED, message), False
        if done is not None:
            return done[1], True
        message = "request with the same Idempotency-Key is in progress"
        return _zuora_error(409, IN_PROGRESS, message), False

    def release(self, key: str, answer: Answer | None) -> None:
        """Ends processing of a claimed key, keeping `answer` for replays unless it is None."""
        route = self._busy.pop(key)
        if answer is not None:
            self._done[key] = (route, answer)
            if len(self._done) > IDEMPOTENCY_LIMIT:
                self._done.popitem(last=False)


class SandboxState:
    """Everything one sandbox app remembers; only touched from its event loop."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        # Live requests outlive a reset, so their in-flight counts are never cleared.
        self._in_flight: Counter[Operation] = Counter()
        self.reset()

    def reset(self) -> None:
        # Requests in flight keep references to the replaced objects, so clearing by
        # replacement cannot break their bookkeeping.
        self.log: deque[LoggedRequest] = deque(maxlen=LOG_LIMIT)
        self.faults = FaultBook()
        self.idempotency = IdempotencyStore()
        self.latency_ms = self.config.latency_ms
        self.latency_by_operation: dict[Operation, int] = {}
        self.request_counts: Counter[Operation] = Counter()
        self.max_concurrent: Counter[Operation] = Counter()
        self.max_zuora_concurrent = 0
        """Peak of Zuora requests in progress at once, all operations together: what the
        tenant's concurrency limit counts."""
        self.refused_for_concurrency = 0
        self.journal_revisions: Counter[str] = Counter()
        self._tokens: dict[str, float] = {}
        self._seq = 0

    def record(self, operation: Operation, request: Request, body: Any) -> LoggedRequest:
        self._seq += 1
        self.request_counts[operation] += 1
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        entry = LoggedRequest(
            seq=self._seq,
            operation=operation,
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers=headers,
            body=body,
            received_at=time.time(),
        )
        self.log.append(entry)
        return entry

    @contextmanager
    def in_flight(self, operation: Operation) -> Iterator[None]:
        self._in_flight[operation] += 1
        self.max_concurrent[operation] = max(
            self.max_concurrent[operation], self._in_flight[operation]
        )
        if operation in ZUORA_OPERATIONS:
            self.max_zuora_concurrent = max(
                self.max_zuora_concurrent, sum(self._in_flight[op] for op in ZUORA_OPERATIONS)
            )
        try:
            yield
        finally:
            self._in_flight[operation] -= 1

    def concurrency_remaining(self) -> int | None:
        """Free Zuora concurrency slots, or None when the limit is off."""
        limit = self.config.concurrency_limit
        if limit == 0:
            return None
        return max(0, limit - sum(self._in_flight[op] for op in ZUORA_OPERATIONS))

    def latency_seconds(self, operation: Operation, fault: Fault | None) -> float:
        ms = self.latency_by_operation.get(operation, self.latency_ms)
        if fault is not None and isinstance(fault.rule, LatencyFault):
            ms += fault.rule.latency_ms
        return ms / 1000

    def issue_token(self) -> str:
        now = time.monotonic()
        self._tokens = {token: expiry for token, expiry in self._tokens.items() if expiry > now}
        token = secrets.token_urlsafe(32)
        self._tokens[token] = now + self.config.token_ttl_seconds
        return token

    def token_valid(self, token: str) -> bool:
        expiry = self._tokens.get(token)
        return expiry is not None and expiry > time.monotonic()

    def revoke_tokens(self) -> None:
        self._tokens.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": {op: self.request_counts[op] for op in OPERATIONS},
            "maxConcurrent": {op: self.max_concurrent[op] for op in OPERATIONS},
            "zuoraMaxConcurrent": self.max_zuora_concurrent,
            "zuoraRefusedForConcurrency": self.refused_for_concurrency,
            "idempotencyKeys": {"distinct": self.idempotency.distinct},
        }


def create_app(config: SandboxConfig) -> Starlette:
    routes = [
        Route("/oauth/token", _upstream("token", _issue_token), methods=["POST"]),
        Route(
            "/v1/uno-regenerate/billing-transaction",
            _upstream("billing", _regenerate_billing),
            methods=["POST"],
        ),
        Route(
            "/v1/uno-regenerate/booking-transaction",
            _upstream("booking", _regenerate_booking),
            methods=["POST"],
        ),
        Route("/v1/action/generate", _upstream("invoice", _generate_invoices), methods=["POST"]),
        Route(
            "/v1/accounts/{accountKey}/billing-documents/generate",
            _upstream("invoice", _generate_billing_documents),
            methods=["POST"],
        ),
        Route(
            "/public/v1/billing/journals/{journalId}/regenerate",
            _upstream("journal", _regenerate_journal),
            methods=["POST"],
        ),
        # Read-only, so `regen-sync check` can prove the API token without changing anything.
        Route("/public/v1/billing/journals", _upstream("journal", _list_journals), methods=["GET"]),
        Route("/_sandbox/requests", _list_requests, methods=["GET"]),
        Route("/_sandbox/requests", _clear_requests, methods=["DELETE"]),
        Route("/_sandbox/faults", _add_fault, methods=["POST"]),
        Route("/_sandbox/faults", _clear_faults, methods=["DELETE"]),
        Route("/_sandbox/latency", _set_latency, methods=["PUT"]),
        Route("/_sandbox/revoke-tokens", _revoke_tokens, methods=["POST"]),
        Route("/_sandbox/reset", _reset, methods=["POST"]),
        Route("/_sandbox/stats", _stats, methods=["GET"]),
        Route("/_sandbox/health", _health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, max_body_size=MAX_BODY_BYTES)
    app.state.sandbox = SandboxState(config)
    return app


def _state(request: Request) -> SandboxState:
    return cast("SandboxState", request.app.state.sandbox)


# --- the shared upstream wrapper ---------------------------------------------------------------


def _upstream(operation: Operation, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state = _state(request)
        raw = await request.body()
        entry = state.record(operation, request, _parse_body(operation, raw))
        if operation in ZUORA_OPERATIONS and state.concurrency_remaining() == 0:
            state.refused_for_concurrency += 1
            answer = _zuora_error(
                429, LIMIT_EXCEEDED, "concurrency limit exceeded", {"Retry-After": "1"}
            ).with_headers(_zuora_headers(state, request))
        else:
            with state.in_flight(operation):
                answer = await _process(state, operation, handler, request, raw, entry)
        entry.status, entry.answered_at = answer.status, time.time()
        return answer.to_response()

    return endpoint


async def _process(
    state: SandboxState,
    operation: Operation,
    handler: Handler,
    request: Request,
    raw: bytes,
    entry: LoggedRequest,
) -> Answer:
    """Zuora's order: authentication, then the Idempotency-Key, then the work.

    As Zuora does, every answer to a request that was processed (a success, success:false,
    a 4xx, a 500) is stored under its Idempotency-Key and replayed verbatim for that key; a
    request turned away before any work (401, 429, 503, a 502 from a gateway) stores nothing.
    Injected faults follow the same rule: an injected 504 stands for a request that was
    processed and whose answer the gateway lost, so the real answer is stored."""
    zuora = operation in ZUORA_OPERATIONS
    answer = _authenticate(state, operation, request)
    if answer is not None:
        return answer.with_headers(_zuora_headers(state, request)) if zuora else answer
    store = state.idempotency if zuora and state.config.idempotency_store else None
    key = request.headers.get("idempotency-key") if store is not None else None
    if store is not None and key is not None:
        answer, entry.replayed = store.claim(key, f"{request.method} {request.url.path}")
        if answer is not None:  # a replay, 409 (still in progress) or 422 (another request)
            return answer if entry.replayed else answer.with_headers(_zuora_headers(state, request))
    fault = state.faults.take(operation, request.url.path, raw.decode("utf-8", "replace"))
    if fault is not None:
        entry.fault = fault.id
    stored: Answer | None = None
    try:
        await asyncio.sleep(state.latency_seconds(operation, fault))
        injected = _fault_answer(operation, request.url.path, fault.rule) if fault else None
        if injected is not None and injected.status in _REFUSED_BEFORE_PROCESSING:
            return injected.with_headers(_zuora_headers(state, request)) if zuora else injected
        if injected is None or injected.status == _ANSWER_LOST:
            call = Call(dict(request.path_params), dict(request.query_params), entry.body)
            answer = handler(state, call)
        else:
            answer = injected
        if zuora:
            answer = answer.with_headers(_zuora_headers(state, request))
        stored = answer
        if injected is not None and injected.status == _ANSWER_LOST:
            return injected.with_headers(_zuora_headers(state, request))
        return answer
    finally:
        if store is not None and key is not None:
            store.release(key, stored)


def _parse_body(operation: Operation, raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    if operation == "token":
        return dict(parse_qsl(text, keep_blank_values=True))
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _authenticate(state: SandboxState, operation: Operation, request: Request) -> Answer | None:
    """The rejection to send when the request's credentials are not accepted."""
    if operation == "token":
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else ""
    if operation == "journal":
        if presented and presented == state.config.api_token:
            return None
        return _problem(403, "The API token is missing or not valid.")
    if presented and state.token_valid(presented):
        return None
    return _zuora_error(401, AUTHENTICATION_ERROR, "Authentication error")


def _zuora_headers(state: SandboxState, request: Request) -> dict[str, str]:
    headers = {"Zuora-Request-Id": str(uuid.uuid4()), **_RATE_LIMIT_HEADERS}
    track_id = request.headers.get("zuora-track-id")
    if track_id is not None:
        headers["Zuora-Track-Id"] = track_id
    remaining = state.concurrency_remaining()
    # Without a limit there is nothing truthful to put in the Concurrency-Limit-* headers.
    if remaining is not None:
        headers |= {
            "Concurrency-Limit-Type": "Default",
            "Concurrency-Limit-Limit": str(state.config.concurrency_limit),
            "Concurrency-Limit-Remaining": str(remaining),
        }
    return headers


def _fault_answer(operation: Operation, path: str, rule: FaultRule) -> Answer | None:
    """The injected answer, or None when the fault only adds latency."""
    if isinstance(rule, LatencyFault):
        return None
    # No default Retry-After: a 429 or 503 without one is a case the client must handle too.
    headers: dict[str, str] = {}
    if rule.retry_after is not None:
        # Whole seconds come out as integers, the form HTTP defines for Retry-After.
        headers["Retry-After"] = f"{rule.retry_after:.3f}".rstrip("0").rstrip(".") or "0"
    message = rule.message or "injected fault"
    if isinstance(rule, SuccessFalseFault):
        if path == "/v1/action/generate":
            return _json(200, [_invoice_failure(rule.code or "UNKNOWN_ERROR", message)], headers)
        return _json(200, _rejected(rule.code or INTERNAL_ERROR, message), headers)
    if operation == "journal":
        return _problem(rule.status, message, headers)
    if operation == "token":
        error = rule.code or _oauth_error(rule.status)
        return _json(rule.status, {"error": error, "error_description": message}, headers)
    return _zuora_error(rule.status, rule.code or _zuora_code(rule.status), message, headers)


def _zuora_code(status: int) -> str:
    category = "99" if status >= 500 else _CATEGORY_BY_STATUS.get(status, "20")
    return "500000" + category


def _oauth_error(status: int) -> str:
    if status in (429, 503):
        return "temporarily_unavailable"
    if status >= 500:
        return "server_error"
    return "invalid_client" if status == 401 else "invalid_request"


# --- response bodies ---------------------------------------------------------------------------


def _json(
    status: int,
    payload: Any,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Answer(status, body, media_type, headers or {})


def _zuora_error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Answer:
    return _json(
        status, {"success": False, "reasons": [{"code": code, "message": message}]}, headers
    )


def _rejected(code: str, message: str) -> dict[str, Any]:
    """The body the regenerate endpoints answer, with 200, for a request they refuse."""
    return {
        "success": False,
        "processId": secrets.token_hex(8).upper(),
        "reasons": [{"code": code, "message": message}],
    }


def _invoice_failure(code: str, message: str) -> dict[str, Any]:
    return {"Success": False, "Errors": [{"Code": code, "Message": message}]}


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> Answer:
    problem = {
        "type": _PROBLEM_TYPES.get(status, "about:blank"),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "traceId": secrets.token_hex(16),
    }
    return _json(status, problem, headers, media_type="application/problem+json")


def _derived_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


# --- upstream handlers ---------------------------------------------------------------------------


def _issue_token(state: SandboxState, call: Call) -> Answer:
    form: dict[str, str] = call.body
    config = state.config
    if (
        form.get("client_id") != config.client_id
        or form.get("client_secret") != config.client_secret
    ):
        return _json(401, {"error": "invalid_client"})
    if form.get("grant_type") != "client_credentials":
        return _json(400, {"error": "unsupported_grant_type"})
    token = {
        "access_token": state.issue_token(),
        "token_type": "bearer",
        "expires_in": config.token_ttl_seconds,
        "scope": "entity.x",
        "jti": uuid.uuid4().hex,
    }
    return _json(200, token, {"Cache-Control": "no-store"})


def _regenerate_billing(state: SandboxState, call: Call) -> Answer:
    return _regenerate(call, _billing_error)


def _regenerate_booking(state: SandboxState, call: Call) -> Answer:
    return _regenerate(call, _booking_error)


def _regenerate(call: Call, body_error: Callable[[dict[str, Any]], str | None]) -> Answer:
    body = call.body
    if not isinstance(body, dict):
        error: str | None = "request body must be a JSON object"
    else:
        error = _flags_error(call.query) or body_error(body)
    if error is not None:
        return _json(200, _rejected(INVALID_VALUE, error))
    # documentId is an alias of id, so both spellings must yield the same ids.
    identity = {("id" if name == "documentId" else name): value for name, value in body.items()}
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    result = {
        "success": True,
        "idList": [_derived_id(canonical, "0"), _derived_id(canonical, "1")],
        "requestId": uuid.uuid4().hex,
    }
    return _json(200, result)


def _flags_error(query: dict[str, str]) -> str | None:
    flags = []
    for name in ("onlyReSend", "reMigrate"):
        value = query.get(name, "false").lower()
        if value not in ("true", "false"):
            return f"{name} must be true or false"
        flags.append(value == "true")
    return "onlyReSend and reMigrate cannot both be true" if all(flags) else None


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _billing_error(body: dict[str, Any]) -> str | None:
    if body.get("type") not in _BILLING_TYPES:
        return "type must be one of " + ", ".join(_BILLING_TYPES)
    if not any(_text(body.get(name)) for name in ("id", "documentId", "number")):
        return "id or number is required"
    return None


def _booking_error(body: dict[str, Any]) -> str | None:
    has = {name: _text(value) for name, value in body.items()}
    match body.get("type"):
        case "Subscription":
            version = body.get("subscriptionVersion")
            versioned = isinstance(version, int) and not isinstance(version, bool)
            if has.get("subscriptionId") or (has.get("subscriptionName") and versioned):
                return None
            return (
                "Subscription needs subscriptionName and integer subscriptionVersion,"
                " or subscriptionId"
            )
        case "OrderLineItem":
            item = body.get("itemNumber")
            numbered = _text(item) or (isinstance(item, int) and not isinstance(item, bool))
            if has.get("orderLineItemId") or (has.get("orderNumber") and numbered):
                return None
            return "OrderLineItem needs orderLineItemId, or orderNumber and itemNumber"
        case "DynamicUsageCharge":
            if has.get("ratePlanChargeId") or has.get("chargeNumber"):
                return None
            return "DynamicUsageCharge needs ratePlanChargeId or chargeNumber"
        case _:
            return "type must be one of Subscription, OrderLineItem, DynamicUsageCharge"


def _generate_invoices(state: SandboxState, call: Call) -> Answer:
    body = call.body
    if not isinstance(body, dict) or body.get("type") != "Invoice":
        return _json(200, [_invoice_failure("INVALID_VALUE", "type must be Invoice")])
    objects = body.get("objects")
    if not isinstance(objects, list) or not objects:
        return _json(200, [_invoice_failure("INVALID_VALUE", "objects must be a non-empty list")])
    return _json(200, [_generate_invoice(item) for item in objects])


def _generate_invoice(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict) or not _text(item.get("AccountId")):
        return _invoice_failure("INVALID_VALUE", "AccountId is required")
    for name in ("InvoiceDate", "TargetDate"):
        if not _is_date(item.get(name)):
            return _invoice_failure("INVALID_VALUE", f"{name} must be a YYYY-MM-DD date")
    return {
        "Success": True,
        "Id": _derived_id(item["AccountId"], item["InvoiceDate"], item["TargetDate"]),
    }


def _generate_billing_documents(state: SandboxState, call: Call) -> Answer:
    """Zuora's billing-documents/generate: the account's invoice (and, with Invoice
    Settlement, credit memo) for the charges up to the target date."""
    account = call.path_params["accountKey"]
    body = call.body
    if not isinstance(body, dict):
        return _json(200, _rejected(INVALID_VALUE, "request body must be a JSON object"))
    for name in ("effectiveDate", "targetDate"):
        if not _is_date(body.get(name)):
            return _json(200, _rejected(INVALID_VALUE, f"{name} must be a yyyy-mm-dd date"))
    subscriptions = body.get("subscriptionIds")
    if subscriptions is not None and (
        not isinstance(subscriptions, list) or not all(_text(s) for s in subscriptions)
    ):
        return _json(200, _rejected(INVALID_VALUE, "subscriptionIds must be a list of ids"))
    if account.startswith("missing-"):
        return _json(200, _rejected(NOT_FOUND, f"Account {account} does not exist"))
    identity = (account, body["effectiveDate"], body["targetDate"], *(subscriptions or ()))
    return _json(
        200,
        {
            "success": True,
            "invoices": [{"id": _derived_id(*identity)}],
            "creditMemos": [{"id": _derived_id(*identity, "credit")}],
        },
    )


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or _DATE.fullmatch(value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _regenerate_journal(state: SandboxState, call: Call) -> Answer:
    journal_id = call.path_params["journalId"]
    if journal_id.startswith("missing-"):
        return _problem(404, f"Journal {journal_id} was not found.")
    body = {} if call.body is None else call.body
    if not isinstance(body, dict):
        return _problem(400, "The request body must be a Journal object.")
    state.journal_revisions[journal_id] += 1
    # id, status and revision describe this regeneration, so the sandbox owns them even when
    # the client echoes a stale copy of the journal back.
    return _json(
        200,
        {
            "name": f"Journal {journal_id}",
            **body,
            "id": journal_id,
            "status": "Validating",
            "revision": state.journal_revisions[journal_id],
        },
    )


def _list_journals(state: SandboxState, call: Call) -> Answer:
    """The Marketplace collection shape: ``$meta.pagination`` and ``data``, paged by RQL's
    ``limit`` and ``offset``; the journals are those regenerated so far."""
    try:
        limit = int(call.query.get("limit", "10"))
        offset = int(call.query.get("offset", "0"))
    except ValueError:
        return _problem(400, "limit and offset must be integers.")
    if not (0 <= limit <= 1000 and offset >= 0):
        return _problem(400, "limit must be 0 to 1000 and offset at least 0.")
    journal_ids = sorted(state.journal_revisions)
    page = journal_ids[offset : offset + limit]
    return _json(
        200,
        {
            "$meta": {"pagination": {"offset": offset, "limit": limit, "total": len(journal_ids)}},
            "data": [
                {
                    "id": journal_id,
                    "name": f"Journal {journal_id}",
                    "status": "Validating",
                    "revision": state.journal_revisions[journal_id],
                }
                for journal_id in page
            ],
        },
    )


# --- control API -------------------------------------------------------------------------------


class _LatencyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ms: int = Field(ge=0)
    operation: Operation | None = None


def _invalid(exc: ValidationError) -> JSONResponse:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    return JSONResponse({"error": "invalid request body", "details": details}, 422)


async def _list_requests(request: Request) -> Response:
    operation = request.query_params.get("operation")
    if operation is not None and operation not in OPERATIONS:
        return JSONResponse({"error": f"unknown operation {operation!r}"}, 400)
    entries = _state(request).log
    return JSONResponse(
        [dataclasses.asdict(e) for e in entries if operation in (None, e.operation)]
    )


async def _clear_requests(request: Request) -> Response:
    _state(request).log.clear()
    return Response(status_code=204)


async def _add_fault(request: Request) -> Response:
    try:
        rule = FAULT_RULE.validate_json(await request.body())
    except ValidationError as exc:
        return _invalid(exc)
    return JSONResponse({"id": _state(request).faults.add(rule)}, 201)


async def _clear_faults(request: Request) -> Response:
    _state(request).faults.clear()
    return Response(status_code=204)


async def _set_latency(request: Request) -> Response:
    try:
        setting = _LatencyRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        return _invalid(exc)
    state = _state(request)
    if setting.operation is None:
        state.latency_ms = setting.ms
    else:
        state.latency_by_operation[setting.operation] = setting.ms
    return JSONResponse({"ms": state.latency_ms, "operations": state.latency_by_operation})


async def _revoke_tokens(request: Request) -> Response:
    _state(request).revoke_tokens()
    return Response(status_code=204)


async def _reset(request: Request) -> Response:
    _state(request).reset()
    return Response(status_code=204)


async def _stats(request: Request) -> Response:
    return JSONResponse(_state(request).stats())


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})
