"""The events regen-sync publishes: one per input event, succeeded or failed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from regen_sync.domain.operations import Operation, RegenerationTask
from regen_sync.domain.outcomes import Failed, FailureReason, Outcome, Succeeded
from regen_sync.domain.parsing import InvalidEvent

REGENERATION_SUCCEEDED = "regeneration.succeeded"
REGENERATION_FAILED = "regeneration.failed"
# Result ids are derived, not random, so a redelivered event yields the same result id and
# consumers can drop the duplicate.
_RESULT_ID_NAMESPACE = uuid.UUID("6f0b7c1e-2a41-4c0e-9a55-0d7f3c2b9e10")


class _ResultData(BaseModel):
    model_config = ConfigDict(frozen=True)

    sourceEventId: str | None = Field(
        default=None, description="id of the input event, when it had one."
    )
    sourceEventType: str | None = None
    operation: Operation | None = Field(
        default=None, description="The upstream operation, when known."
    )
    objectKey: str | None = Field(
        default=None, description="The business object; events for one object run in order."
    )
    attempts: int = Field(ge=0, description="Upstream attempts made (0 when none was made).")
    servedByEventId: str | None = Field(
        default=None,
        description="The event whose upstream call served this one: its own id, or, when "
        "events waiting for the same object were coalesced into one call, the first one's.",
    )


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
    task: RegenerationTask,
    outcome: Outcome,
    *,
    source: str,
    now: dt.datetime,
    served_by: RegenerationTask | None = None,
) -> ResultEvent:
    """Describe the outcome of a task's upstream call as a CloudEvent. ``served_by`` is the task
    whose upstream call produced the outcome, when it was not the task's own."""
    result = outcome.result
    event, operation = task.event, task.operation
    common: dict[str, Any] = {
        "sourceEventId": event.id,
        "sourceEventType": event.type,
        "operation": operation,
        "objectKey": task.object_key,
        "attempts": outcome.attempts,
        "servedByEventId": (served_by or task).event.id,
    }
    envelope: dict[str, Any] = {"source": source, "subject": task.object_key, "time": now}
    if isinstance(result, Succeeded):
        return RegenerationSucceeded(
            id=_result_id(event.id, operation, REGENERATION_SUCCEEDED),
            data=RegenerationSucceededData(**common, upstream=dict(result.upstream)),
            **envelope,
        )
    return RegenerationFailed(
        id=_result_id(event.id, operation, REGENERATION_FAILED),
        data=_failed_data(common, result, problems=None),
        **envelope,
    )


def invalid_event_result(
    invalid: InvalidEvent, *, source: str, origin: str, now: dt.datetime
) -> RegenerationFailed:
    """The result of input that is not a valid event: ``invalid_event``, no upstream call.
    ``origin`` names the input record (topic/partition/offset) and stands in for the event id
    when the input had none."""
    failure = Failed(FailureReason.INVALID_EVENT, "; ".join(invalid.problems)[:2000])
    common = {
        "sourceEventId": invalid.event_id,
        "sourceEventType": invalid.event_type,
        "operation": None,
        "attempts": 0,
    }
    return RegenerationFailed(
        id=_result_id(invalid.event_id or origin, None, REGENERATION_FAILED),
        source=source,
        time=now,
        data=_failed_data(common, failure, problems=list(invalid.problems)),
    )


def internal_error_event(
    event_id: str | None,
    event_type: str | None,
    failure: Failed,
    *,
    source: str,
    origin: str,
    now: dt.datetime,
) -> RegenerationFailed:
    """The last-resort result of an event whose handling kept raising: built from as little
    as possible, so whatever broke the normal path cannot break this one too."""
    return RegenerationFailed(
        id=_result_id(event_id or origin, None, REGENERATION_FAILED),
        source=source,
        time=now,
        data=_failed_data(
            {"sourceEventId": event_id, "sourceEventType": event_type, "attempts": 0},
            failure,
            problems=None,
        ),
    )


def _result_id(source_id: str, operation: Operation | None, result_type: str) -> str:
    return str(uuid.uuid5(_RESULT_ID_NAMESPACE, f"{source_id}\n{operation}\n{result_type}"))


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
