"""The domain: "data fixed" events, the regeneration each calls for, and its outcome.

Nothing here knows about Kafka or HTTP.
"""

from regen_sync.domain.events import (
    ACCOUNT_CHARGES_FIXED,
    BILLING_DOCUMENT_FIXED,
    BOOKING_FIXED,
    EVENT_TYPES,
    JOURNAL_FIXED,
    AccountChargesFixed,
    BillingDocumentFixed,
    BookingFixed,
    CloudEvent,
    DataFixedEvent,
    JournalFixed,
)
from regen_sync.domain.operations import Operation, RegenerationTask, Upstream, plan
from regen_sync.domain.outcomes import (
    AttemptResult,
    Failed,
    FailureReason,
    Outcome,
    Succeeded,
    TransientFailure,
    UpstreamLoad,
)
from regen_sync.domain.parsing import InvalidEvent, parse_event
from regen_sync.domain.results import (
    REGENERATION_FAILED,
    REGENERATION_SUCCEEDED,
    RegenerationFailed,
    RegenerationSucceeded,
    ResultEvent,
    internal_error_event,
    invalid_event_result,
    result_event,
)

__all__ = [
    "ACCOUNT_CHARGES_FIXED",
    "BILLING_DOCUMENT_FIXED",
    "BOOKING_FIXED",
    "EVENT_TYPES",
    "JOURNAL_FIXED",
    "REGENERATION_FAILED",
    "REGENERATION_SUCCEEDED",
    "AccountChargesFixed",
    "AttemptResult",
    "BillingDocumentFixed",
    "BookingFixed",
    "CloudEvent",
    "DataFixedEvent",
    "Failed",
    "FailureReason",
    "InvalidEvent",
    "JournalFixed",
    "Operation",
    "Outcome",
    "RegenerationFailed",
    "RegenerationSucceeded",
    "RegenerationTask",
    "ResultEvent",
    "Succeeded",
    "TransientFailure",
    "Upstream",
    "UpstreamLoad",
    "internal_error_event",
    "invalid_event_result",
    "parse_event",
    "plan",
    "result_event",
]
