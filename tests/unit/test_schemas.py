"""The checked-in contract files match the code, and real events validate against them."""

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

from regen_sync.domain import Outcome, Succeeded, parse_event, plan
from regen_sync.domain.parsing import InvalidEvent
from regen_sync.domain.results import invalid_event_result, result_event
from regen_sync.schemas import render_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_checked_in_schemas_match_the_code() -> None:
    rendered = render_schemas()
    stale = [
        name
        for name, content in rendered.items()
        if not (SCHEMAS / name).is_file() or (SCHEMAS / name).read_text() != content
    ]
    assert not stale, f"schemas/ is out of date for {stale}: run `regen-sync schemas`"
    extra = {path.name for path in SCHEMAS.glob("*.json")} - set(rendered)
    assert not extra, f"schemas/ has files the code no longer generates: {extra}"


def schema(name: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((SCHEMAS / name).read_text())
    return loaded


def test_a_valid_event_validates_and_an_invalid_one_does_not() -> None:
    event = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "s",
        "type": "booking.fixed",
        "data": {"objectType": "OrderLineItem", "orderLineItemId": "OLI-1"},
    }
    jsonschema.validate(event, schema("data-fixed-event.schema.json"))
    jsonschema.validate(event, schema("booking.fixed.schema.json"))
    event["data"] = {"objectType": "Order"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schema("booking.fixed.schema.json"))


def test_published_events_validate_against_their_schemas() -> None:
    raw = json.dumps(
        {
            "specversion": "1.0",
            "id": "e-2",
            "source": "s",
            "type": "journal.fixed",
            "data": {"journalId": "J-1"},
        }
    ).encode()
    event = parse_event(raw, max_bytes=10_000)
    assert not isinstance(event, InvalidEvent)
    task = plan(event)
    now = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    succeeded = result_event(task, Outcome(Succeeded({"journalId": "J-1"}), 1), source="s", now=now)
    failed = invalid_event_result(InvalidEvent(("not JSON",)), source="s", origin="t/0/2", now=now)
    jsonschema.validate(
        json.loads(succeeded.model_dump_json(exclude_none=True)),
        schema("regeneration.succeeded.schema.json"),
    )
    jsonschema.validate(
        json.loads(failed.model_dump_json(exclude_none=True)),
        schema("regeneration.failed.schema.json"),
    )


def test_asyncapi_describes_the_input_with_the_event_union() -> None:
    document = schema("asyncapi.json")
    messages = document["components"]["messages"]  # type: ignore[index]
    assert messages["data fixed events:SubscribeMessage"]["payload"] == {
        "$ref": "#/components/schemas/DataFixedEvent"
    }
