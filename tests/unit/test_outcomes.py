"""The retry-or-give-up rules for upstream answers."""

import pytest

from regen_sync.domain import Failed, FailureReason, TransientFailure
from regen_sync.domain.outcomes import (
    classify_http_error,
    classify_zuora_refusal,
    is_transient_zuora_code,
)


@pytest.mark.parametrize(
    "code",
    [
        "53100050",
        "53100060",
        "53100061",
        "50000070",
        "58730099",
        "LOCK_COMPETITION",
        "TEMPORARY_ERROR",
    ],
)
def test_transient_zuora_codes(code: str) -> None:
    assert is_transient_zuora_code(code)


@pytest.mark.parametrize(
    "code",
    [
        "53100320",
        "53100010",
        "53100011",
        "53100020",
        "53100030",
        "53100040",
        "53100045",
        "53100090",
        "INVALID_VALUE",
        "",
    ],
)
def test_permanent_zuora_codes(code: str) -> None:
    assert not is_transient_zuora_code(code)


def test_one_transient_reason_makes_the_refusal_transient() -> None:
    result = classify_zuora_refusal(["53100320", "53100050"], "m", {}, 200)
    assert isinstance(result, TransientFailure)
    result = classify_zuora_refusal(["53100320"], "m", {"reasons": []}, 200)
    assert isinstance(result, Failed)
    assert result.reason is FailureReason.REJECTED
    assert not result.retryable


@pytest.mark.parametrize("status", [409, 429, 500, 502, 503, 504])
def test_idempotent_upstream_retries_transient_statuses(status: int) -> None:
    assert isinstance(classify_http_error(status, {}, idempotent=True), TransientFailure)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, FailureReason.REJECTED),
        (401, FailureReason.UNAUTHORIZED),
        (403, FailureReason.FORBIDDEN),
        (404, FailureReason.NOT_FOUND),
        (422, FailureReason.IDEMPOTENCY_CONFLICT),
    ],
)
def test_idempotent_upstream_permanent_statuses(status: int, reason: FailureReason) -> None:
    result = classify_http_error(status, {}, idempotent=True)
    assert isinstance(result, Failed)
    assert result.reason is reason


@pytest.mark.parametrize("status", [429, 502, 503])
def test_non_idempotent_upstream_retries_only_what_was_not_taken(status: int) -> None:
    assert isinstance(classify_http_error(status, {}, idempotent=False), TransientFailure)


@pytest.mark.parametrize("status", [500, 504])
def test_non_idempotent_upstream_reports_ambiguous_answers(status: int) -> None:
    result = classify_http_error(status, {}, idempotent=False)
    assert isinstance(result, Failed)
    assert result.reason is FailureReason.OUTCOME_UNKNOWN
    assert result.retryable


def test_retry_after_is_carried() -> None:
    result = classify_http_error(429, {}, idempotent=True, retry_after_seconds=7)
    assert isinstance(result, TransientFailure)
    assert result.retry_after_seconds == 7
