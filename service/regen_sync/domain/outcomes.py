"""What an upstream attempt and a whole regeneration can end in, and how answers are classified.

Kept free of HTTP: the adapters hand over status codes and parsed bodies, the rules that
decide "retry" or "give up" live here so they can be read and tested in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FailureReason(StrEnum):
    INVALID_EVENT = "invalid_event"
    """The input is not a valid "data fixed" event; nothing was called."""
    REJECTED = "rejected"
    """The upstream refused the request for a reason retrying cannot fix."""
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    """Credentials were refused, even after fetching a fresh token."""
    FORBIDDEN = "forbidden"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    """Zuora saw this Idempotency-Key with a different request (HTTP 422)."""
    OUTCOME_UNKNOWN = "outcome_unknown"
    """The request may have been applied but no answer came back, and repeating it is unsafe."""
    RETRIES_EXHAUSTED = "retries_exhausted"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True, slots=True)
class UpstreamLoad:
    """What an answer tells about the upstream's limits (Zuora's ``Concurrency-Limit-*`` and
    ``ratelimit-*`` headers), so callers can slow down before they are refused."""

    concurrency_limit: int | None = None
    concurrency_remaining: int | None = None
    rate_remaining: int | None = None
    rate_reset_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Succeeded:
    upstream: Mapping[str, Any]
    """What the upstream answered that identifies the work done (ids, status, request ids)."""
    load: UpstreamLoad | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    reason: FailureReason
    message: str
    retryable: bool = False
    """True when sending the same event again later may succeed (an operator may re-drive it)."""
    http_status: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    """The upstream's own error description: Zuora reasons / Errors, or ProblemDetails."""
    load: UpstreamLoad | None = None


@dataclass(frozen=True, slots=True)
class TransientFailure:
    """An attempt that failed in a way worth retrying."""

    message: str
    http_status: int | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    load: UpstreamLoad | None = None

    @property
    def throttled(self) -> bool:
        """The upstream is up but refused because of a rate or concurrency limit."""
        return self.http_status == 429

    @property
    def suggests_outage(self) -> bool:
        """No answer, or an answer saying the upstream cannot serve anyone right now.

        429 (our own pace) and 409 (the same Idempotency-Key still running) come from an
        upstream that works, so they never count towards opening its circuit.
        """
        return self.http_status not in (409, 429)

    @property
    def outcome_unknown(self) -> bool:
        """Whether the upstream processed the request is not known yet: no answer (a
        timeout, a connection lost after sending), a gateway's 502 or 504, or 409 (the same
        Idempotency-Key still in progress). Only then is the next attempt sent under the same
        key; any other answer is what Zuora stored under it, and would only be replayed."""
        return self.http_status in _OUTCOME_UNKNOWN_STATUSES


AttemptResult = Succeeded | Failed | TransientFailure
"""The result of one upstream attempt."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The final result of one event, published as regeneration.succeeded or .failed."""

    result: Succeeded | Failed
    attempts: int


# Zuora reason codes are 8 digits; the last two give the category.
_TRANSIENT_ZUORA_CATEGORIES = frozenset({"50", "60", "61", "70", "99"})
# action/generate answers SOAP-style error codes instead of numbers.
_TRANSIENT_ZUORA_ERROR_NAMES = frozenset(
    {
        "LOCK_COMPETITION",
        "REQUEST_EXCEEDED_LIMIT",
        "REQUEST_EXCEEDED_RATE",
        "SERVER_UNAVAILABLE",
        "TEMPORARY_ERROR",
        "TRANSACTION_TIMEOUT",
        "UNKNOWN_ERROR",
    }
)
_TRANSIENT_HTTP_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_OUTCOME_UNKNOWN_STATUSES = frozenset({None, 409, 502, 504})
# Answers that mean the request was turned away before any work was done.
_NOT_TAKEN_STATUSES = frozenset({429, 502, 503})


def is_transient_zuora_code(code: object) -> bool:
    text = str(code).strip().upper()
    if text.isdigit():
        return len(text) >= 2 and text[-2:] in _TRANSIENT_ZUORA_CATEGORIES
    return text in _TRANSIENT_ZUORA_ERROR_NAMES


def classify_zuora_refusal(
    codes: Iterable[object], message: str, details: Mapping[str, Any], http_status: int
) -> Failed | TransientFailure:
    """A Zuora answer saying success:false. Transient if any reason is transient."""
    if any(is_transient_zuora_code(code) for code in codes):
        return TransientFailure(message, http_status, details)
    return Failed(FailureReason.REJECTED, message, http_status=http_status, details=details)


def classify_http_error(
    status: int,
    details: Mapping[str, Any],
    *,
    idempotent: bool,
    retry_after_seconds: float | None = None,
) -> Failed | TransientFailure:
    """A non-2xx answer (other than a 401 the adapter already retried with a new token).

    ``idempotent`` says whether the request carried an Idempotency-Key the upstream honours
    (Zuora). Without one (SoftwareOne), a 500 or 504 may come after the work was applied,
    so it is reported as ``outcome_unknown`` instead of blindly repeated; only answers that
    say the request was not taken (429, 502, 503) are retried.
    """
    message = f"upstream answered HTTP {status}"
    if idempotent and status == 409:
        return TransientFailure(
            f"{message}: the same Idempotency-Key is still in progress",
            status,
            details,
            retry_after_seconds,
        )
    if status in _TRANSIENT_HTTP_STATUSES:
        if idempotent or status in _NOT_TAKEN_STATUSES:
            return TransientFailure(message, status, details, retry_after_seconds)
        return Failed(
            FailureReason.OUTCOME_UNKNOWN,
            f"{message}; the request may have been applied, so it is not repeated",
            retryable=True,
            http_status=status,
            details=details,
        )
    reason = {
        401: FailureReason.UNAUTHORIZED,
        403: FailureReason.FORBIDDEN,
        404: FailureReason.NOT_FOUND,
        422: FailureReason.IDEMPOTENCY_CONFLICT if idempotent else FailureReason.REJECTED,
    }.get(status, FailureReason.REJECTED)
    return Failed(reason, message, http_status=status, details=details)
