"""The "data fixed" events regen-sync consumes: CloudEvents 1.0, structured JSON mode.

The pydantic models here are the contract: the JSON Schemas in ``schemas/`` are generated
from them, and parsing an event is validating it against them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

# Upstream identifiers travel into URLs and headers: no control characters, bounded length.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")
]
JOURNAL_ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
JournalId = Annotated[str, StringConstraints(pattern=JOURNAL_ID_PATTERN)]
# Zuora account ids (32 hex digits) and account numbers (up to 70 characters); part of a URL
# path with the billing-documents invoice API, so nothing that could step out of its path
# segment: no slash, no leading dot (".."), nothing that needs escaping.
ACCOUNT_KEY_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,69}$"
AccountKey = Annotated[str, StringConstraints(pattern=ACCOUNT_KEY_PATTERN)]

BILLING_DOCUMENT_FIXED = "billing.document.fixed"
BOOKING_FIXED = "booking.fixed"
ACCOUNT_CHARGES_FIXED = "account.charges.fixed"
JOURNAL_FIXED = "journal.fixed"
EVENT_TYPES = (BILLING_DOCUMENT_FIXED, BOOKING_FIXED, ACCOUNT_CHARGES_FIXED, JOURNAL_FIXED)


class _EventData(BaseModel):
    # A misspelt identifier must be refused, not silently dropped from the upstream call.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ZuoraScope(_EventData):
    entityId: Identifier | None = Field(
        default=None, description="Sent as Zuora-Entity-Ids (Multi-entity tenants)."
    )
    orgIds: list[Identifier] | None = Field(
        default=None, max_length=100, description="Sent as Zuora-Org-Ids (Multi-org tenants)."
    )


class RegenerationFlags(ZuoraScope):
    onlyReSend: bool | None = Field(default=None, description="Zuora query flag onlyReSend.")
    reMigrate: bool | None = Field(default=None, description="Zuora query flag reMigrate.")

    @model_validator(mode="after")
    def _flags_compatible(self) -> Self:
        if self.onlyReSend and self.reMigrate:
            raise ValueError("onlyReSend and reMigrate cannot both be true")
        return self


class BillingDocumentFixedData(RegenerationFlags):
    documentType: Literal["Invoice", "CreditMemo", "DebitMemo", "InvoiceItemAdjustment"]
    documentId: Identifier | None = None
    documentNumber: Identifier | None = None

    @model_validator(mode="after")
    def _document_identified(self) -> Self:
        if self.documentId is None and self.documentNumber is None:
            raise ValueError("documentId or documentNumber is required")
        return self


class BookingFixedData(RegenerationFlags):
    objectType: Literal["Subscription", "OrderLineItem", "DynamicUsageCharge"]
    subscriptionName: Identifier | None = None
    subscriptionVersion: int | None = Field(default=None, ge=1)
    subscriptionId: Identifier | None = None
    orderLineItemId: Identifier | None = None
    orderNumber: Identifier | None = None
    itemNumber: Identifier | None = None
    ratePlanChargeId: Identifier | None = None
    chargeNumber: Identifier | None = None

    @model_validator(mode="after")
    def _object_identified(self) -> Self:
        identified = {
            "Subscription": self.subscriptionId is not None
            or (self.subscriptionName is not None and self.subscriptionVersion is not None),
            "OrderLineItem": self.orderLineItemId is not None
            or (self.orderNumber is not None and self.itemNumber is not None),
            "DynamicUsageCharge": self.ratePlanChargeId is not None
            or self.chargeNumber is not None,
        }[self.objectType]
        if not identified:
            raise ValueError(
                {
                    "Subscription": "Subscription needs subscriptionId or "
                    "subscriptionName + subscriptionVersion",
                    "OrderLineItem": "OrderLineItem needs orderLineItemId or "
                    "orderNumber + itemNumber",
                    "DynamicUsageCharge": "DynamicUsageCharge needs ratePlanChargeId "
                    "or chargeNumber",
                }[self.objectType]
            )
        return self


class AccountChargesFixedData(ZuoraScope):
    accountId: AccountKey = Field(description="Zuora account id or account number.")
    invoiceDate: dt.date = Field(description="Invoice date (billing-documents: effectiveDate).")
    targetDate: dt.date
    subscriptionIds: list[Identifier] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Only these subscriptions' charges (latest versions of active "
        "subscriptions); needs REGEN_ZUORA__INVOICE_API=billing-documents.",
    )


class JournalFixedData(_EventData):
    journalId: JournalId
    journal: dict[str, Any] | None = Field(
        default=None,
        description="Journal fields to update before regenerating (SoftwareOne Journal object).",
    )


class CloudEvent(BaseModel):
    """CloudEvents 1.0 context attributes; extension attributes are allowed and kept."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    source: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    type: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    subject: str | None = None
    time: dt.datetime | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    data: Any = None


class BillingDocumentFixed(CloudEvent):
    type: Literal["billing.document.fixed"]
    data: BillingDocumentFixedData


class BookingFixed(CloudEvent):
    type: Literal["booking.fixed"]
    data: BookingFixedData


class AccountChargesFixed(CloudEvent):
    type: Literal["account.charges.fixed"]
    data: AccountChargesFixedData


class JournalFixed(CloudEvent):
    type: Literal["journal.fixed"]
    data: JournalFixedData


DataFixedEvent = Annotated[
    BillingDocumentFixed | BookingFixed | AccountChargesFixed | JournalFixed,
    Field(discriminator="type"),
]
