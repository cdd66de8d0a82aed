"""The events regen-sync publishes: one per input event, succeeded or failed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from service.domain.operations import Operation, RegenerationTask
from service.domain.outcomes import Failed, FailureReason, Outcome, Succeeded
from service.domain.parsing import InvalidEvent

REGENERATION_SUCCEEDED = "regeneration.succeeded"
REGENERATION_FAILED = "regeneration.failed"
# Result ids are derived, not random, so a redelivered event yields the same result id and
# consumers can drop the duplicate.
_RESULT_ID_NAMESPACE = uuid.UUID("6f0b7c1e-2a41-4c0e-9a55-0d7f3c2b9e10")


class _ResultData(BaseModel):
    model_config = ConfigDict(frozen=True)

    sourceEventId: str | None = Field(description="id of the input event, when it had one.")
    sourceEventType: str | None = None
    operation: Operation | None = Field(description="The upstream operation, when known.")
    objectKey: str | None = Field(
        default=None, description="The business object; events for one object run in order."
    )
    attempts: int = Field(ge=0, description="Upstream attempts made (0 when none was made).")


class RegenerationSucceededData(_ResultData):
    sourceEventId: str
    operation: Operation
    upstream: dict[str, Any] = Field(
        description="What the upstream answered: idList, invoiceId, or journalId and status; "
        "plus Zuora's requestId / trackId / processId where answered."
    )


class RegenerationFailedData(_ResultData):
    reason: FailureReason
    message: str
    retryable: bool = Field(description="Whether sending the event again later may succeed.")
    httpStatus: int | None = Field(default=None, description="The upstream's HTTP status.")
    upstreamError: dict[str, Any] | None = Field(
        default=None, description="The upstream's own error: Zuora reasons/Errors, ProblemDetails."
    )
    problems: list[str] | None = Field(
        default=None, description="Why the input is invalid (reason invalid_event)."
    )


class _ResultEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str
    subject: str | None = None
    time: dt.datetime
    datacontenttype: Literal["application/json"] = "application/json"


class RegenerationSucceeded(_ResultEvent):
    type: Literal["regeneration.succeeded"] = "regeneration.succeeded"
    data: RegenerationSucceededData


class RegenerationFailed(_ResultEvent):
    type: Literal["regeneration.failed"] = "regeneration.failed"
    data: RegenerationFailedData


ResultEvent = RegenerationSucceeded | RegenerationFailed


def result_event(
    subject: RegenerationTask | InvalidEvent,
    outcome: Outcome,
    *,
    source: str,
    origin: str,
    now: dt.datetime,
) -> ResultEvent:
    """Describe an outcome as a CloudEvent. ``origin`` names the input record (topic/part/offset)
    and stands in for the event id when the input had none."""
    match subject:
        case RegenerationTask(event=event, operation=operation, object_key=object_key):
            source_id, source_type = event.id, event.type
            task_operation: Operation | None = operation
            task_object: str | None = object_key
            problems = None
        case InvalidEvent(event_id=source_id, event_type=source_type):
            task_operation = task_object = None
            problems = list(subject.problems)
    result = outcome.result
    result_type = REGENERATION_SUCCEEDED if isinstance(result, Succeeded) else REGENERATION_FAILED
    result_id = str(
        uuid.uuid5(_RESULT_ID_NAMESPACE, f"{source_id or origin}\n{task_operation}\n{result_type}")
    )
    common: dict[str, Any] = {
        "sourceEventId": source_id,
        "sourceEventType": source_type,
        "operation": task_operation,
        "objectKey": task_object,
        "attempts": outcome.attempts,
    }
    if isinstance(result, Succeeded):
        assert task_operation is not None and source_id is not None
        return RegenerationSucceeded(
            id=result_id,
            source=source,
            subject=task_object,
            time=now,
            data=RegenerationSucceededData(**common, upstream=dict(result.upstream)),
        )
    return RegenerationFailed(
        id=result_id,
        source=source,
        subject=task_object,
        time=now,
        data=_failed_data(common, result, problems),
    )


def _failed_data(
    common: dict[str, Any], failure: Failed, problems: list[str] | None
) -> RegenerationFailedData:
    return RegenerationFailedData(
        **common,
        reason=failure.reason,
        message=failure.message,
        retryable=failure.retryable,
        httpStatus=failure.http_status,
        upstreamError=dict(failure.details) or None,
        problems=problems,
    )


def invalid_event_outcome(invalid: InvalidEvent) -> Outcome:
    return Outcome(
        Failed(FailureReason.INVALID_EVENT, "; ".join(invalid.problems)[:2000]), attempts=0
    )
