"""Which upstream operation a "data fixed" event calls for, and what identifies its object."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from enum import StrEnum

from regen_sync.domain.events import (
    AccountChargesFixed,
    BillingDocumentFixed,
    BookingFixed,
    DataFixedEvent,
    JournalFixed,
    ZuoraScope,
)


class Upstream(StrEnum):
    ZUORA = "zuora"
    SOFTWAREONE = "softwareone"


class Operation(StrEnum):
    REGENERATE_BILLING_TRANSACTIONS = "regenerate_billing_transactions"
    REGENERATE_BOOKING_TRANSACTIONS = "regenerate_booking_transactions"
    GENERATE_INVOICE = "generate_invoice"
    REGENERATE_JOURNAL = "regenerate_journal"

    @property
    def upstream(self) -> Upstream:
        if self is Operation.REGENERATE_JOURNAL:
            return Upstream.SOFTWAREONE
        return Upstream.ZUORA

    @property
    def heavy(self) -> bool:
        """Zuora counts invoice generation among its heavy requests, allowed fewer at once
        than ordinary ones within the tenant's concurrency limit."""
        return self is Operation.GENERATE_INVOICE


@dataclass(frozen=True, slots=True)
class RegenerationTask:
    """One event's regeneration: what to call, and the keys that keep it safe to repeat."""

    event: DataFixedEvent
    operation: Operation
    object_key: str
    """Events with the same object key are regenerated one after another, in arrival order."""
    idempotency_key: str
    """The Idempotency-Key of the next attempt. Zuora stores the first answer to a key and
    replays it for 24 h, so a key is kept only while the outcome is unknown (no answer, a
    gateway's 502/504, or 409: still in progress) and renewed after any answer
    (``with_renewed_key``). Keys are derived from the event, its re-drive count and the number
    of renewals, so a redelivery walks the same keys and gets Zuora's stored answers back."""
    redrive: int = 0
    """How often operators re-drove this event: each re-drive starts from a key of its own, so
    a fixed document is regenerated instead of answered the stored failure again."""
    key_renewals: int = 0

    @property
    def identity(self) -> str:
        """The event, whatever its attempt (the circuit breaker counts distinct events)."""
        return f"{self.event.source}\n{self.event.id}"

    def with_renewed_key(self) -> RegenerationTask:
        """The task for an attempt after an answer Zuora stored under the current key."""
        renewals = self.key_renewals + 1
        return dataclasses.replace(
            self,
            key_renewals=renewals,
            idempotency_key=idempotency_key(
                self.event.source,
                self.event.id,
                self.operation,
                redrive=self.redrive,
                renewals=renewals,
            ),
        )

    @property
    def coalescing_key(self) -> str:
        """Events of one object with equal keys ask for exactly the same upstream call (same
        operation, identifiers and flags), so one call can serve them all."""
        return f"{self.operation}\n{self.event.data.model_dump_json()}"

    @property
    def limit_scope(self) -> str:
        """What the upstream's rate and concurrency limits are counted per: Zuora counts per
        entity under Multi-entity, otherwise per tenant ('')."""
        data = self.event.data
        return (data.entityId or "") if isinstance(data, ZuoraScope) else ""


def plan(event: DataFixedEvent, *, redrive: int = 0) -> RegenerationTask:
    operation, object_key = _operation_and_object(event)
    return RegenerationTask(
        event=event,
        operation=operation,
        object_key=object_key,
        idempotency_key=idempotency_key(event.source, event.id, operation, redrive=redrive),
        redrive=redrive,
    )


def idempotency_key(
    source: str, event_id: str, operation: Operation, *, redrive: int = 0, renewals: int = 0
) -> str:
    # CloudEvents are unique by source + id; hashing keeps the key within Zuora's 255
    # characters and free of whatever characters producers put into ids. The first key of an
    # event that was never re-driven is the one regen-sync always sent.
    identity = f"{source}\n{event_id}\n{operation}"
    if redrive or renewals:
        identity += f"\n{redrive}/{renewals}"
    return f"regen-sync-{hashlib.sha256(identity.encode()).hexdigest()}"


def _operation_and_object(event: DataFixedEvent) -> tuple[Operation, str]:
    match event:
        case BillingDocumentFixed(data=data):
            document = (
                f"id={data.documentId}" if data.documentId else f"number={data.documentNumber}"
            )
            return (
                Operation.REGENERATE_BILLING_TRANSACTIONS,
                _scoped(data.entityId, f"{data.documentType}:{document}"),
            )
        case BookingFixed(data=data):
            return Operation.REGENERATE_BOOKING_TRANSACTIONS, _scoped(
                data.entityId, _booking_object(event)
            )
        case AccountChargesFixed(data=data):
            return Operation.GENERATE_INVOICE, _scoped(data.entityId, f"Account:{data.accountId}")
        case JournalFixed(data=data):
            return Operation.REGENERATE_JOURNAL, f"Journal:{data.journalId}"


def _booking_object(event: BookingFixed) -> str:
    data = event.data
    match data.objectType:
        case "Subscription":
            # A subscription's name survives new versions, its id does not.
            name = f"name={data.subscriptionName}" if data.subscriptionName else None
            return f"Subscription:{name or f'id={data.subscriptionId}'}"
        case "OrderLineItem":
            if data.orderLineItemId:
                return f"OrderLineItem:id={data.orderLineItemId}"
            return f"OrderLineItem:order={data.orderNumber}:item={data.itemNumber}"
        case "DynamicUsageCharge":
            if data.ratePlanChargeId:
                return f"DynamicUsageCharge:id={data.ratePlanChargeId}"
            return f"DynamicUsageCharge:number={data.chargeNumber}"


def _scoped(entity_id: str | None, object_key: str) -> str:
    return f"{entity_id}/{object_key}" if entity_id else object_key
