"""The published contract, generated from the code: JSON Schemas of every event and the
AsyncAPI document of the app. ``regen-sync schemas`` writes them to ``schemas/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from regen_sync.channels import INPUT_CHANNEL, asyncapi
from regen_sync.config import Settings
from regen_sync.domain import (
    AccountChargesFixed,
    BillingDocumentFixed,
    BookingFixed,
    DataFixedEvent,
    JournalFixed,
    RegenerationFailed,
    RegenerationSucceeded,
)

_EVENT_MODELS: dict[str, type[BaseModel]] = {
    "billing.document.fixed": BillingDocumentFixed,
    "booking.fixed": BookingFixed,
    "account.charges.fixed": AccountChargesFixed,
    "journal.fixed": JournalFixed,
    "regeneration.succeeded": RegenerationSucceeded,
    "regeneration.failed": RegenerationFailed,
}
# The AsyncAPI document names servers and topics; these are the documented defaults.
_DOCUMENTATION_SETTINGS = {
    "kafka": {"bootstrap_servers": "kafka:9092"},
    "zuora": {
        "base_url": "https://rest.zuora.com",
        "client_id": "documentation",
        "client_secret": "documentation-only",
    },
    "softwareone": {
        "base_url": "https://api.platform.softwareone.com",
        "api_token": "documentation-only",
    },
}


def render_schemas() -> dict[str, str]:
    """File name → content of every generated contract file."""
    files = {
        f"{event_type}.schema.json": _dump(model.model_json_schema())
        for event_type, model in _EVENT_MODELS.items()
    }
    files["data-fixed-event.schema.json"] = _dump(TypeAdapter(DataFixedEvent).json_schema())
    files["asyncapi.json"] = _dump(_asyncapi())
    return files


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_schemas().items():
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def _asyncapi() -> dict[str, Any]:
    specification = asyncapi(Settings.model_validate(_DOCUMENTATION_SETTINGS))
    document: dict[str, Any] = json.loads(specification.to_specification().to_json())
    # The handler takes the raw record (bad input must reach it too), so FastStream cannot
    # see the payload type; the document gets the event union it actually accepts.
    input_schema = TypeAdapter(DataFixedEvent).json_schema(
        ref_template="#/components/schemas/{model}"
    )
    schemas = document["components"]["schemas"]
    schemas.update(input_schema.pop("$defs"))
    schemas["DataFixedEvent"] = input_schema
    schemas.pop("EmptyPayload", None)
    message = document["components"]["messages"][f"{INPUT_CHANNEL}:SubscribeMessage"]
    message["payload"] = {"$ref": "#/components/schemas/DataFixedEvent"}
    message["contentType"] = "application/cloudevents+json"
    return document


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
