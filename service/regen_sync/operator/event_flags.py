"""``send``'s event flags, generated from the event data models so they always match them:
``documentId`` is ``--document-id``, ``onlyReSend`` is ``--only-re-send`` / ``--no-only-re-send``.

Flags only assemble the JSON; the service's parser validates it, so an event built here is
accepted or refused exactly as the service would.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import types
import uuid
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from regen_sync.domain import DataFixedEvent

DEFAULT_SOURCE = "urn:regen-sync:send"


def _data_models() -> dict[str, type[BaseModel]]:
    """Event type -> its data model, read off the union the service parses with, so a new
    event type gets its flags without a change here."""
    events: tuple[type[BaseModel], ...] = get_args(get_args(DataFixedEvent)[0])
    models: dict[str, type[BaseModel]] = {}
    for event in events:
        data = event.model_fields["data"].annotation
        assert isinstance(data, type), event
        assert issubclass(data, BaseModel), event
        models[get_args(event.model_fields["type"].annotation)[0]] = data
    return models


DATA_MODELS = _data_models()


def flag_name(field: str) -> str:
    """``ratePlanChargeId`` -> ``--rate-plan-charge-id``."""
    return "--" + re.sub(r"(?<!^)(?=[A-Z])", "-", field).lower()


def data_fields() -> dict[str, tuple[FieldInfo, list[str]]]:
    """Every data field, with the event types that have it (shared ones appear once)."""
    fields: dict[str, tuple[FieldInfo, list[str]]] = {}
    for event_type, model in DATA_MODELS.items():
        for name, field in model.model_fields.items():
            fields.setdefault(name, (field, []))[1].append(event_type)
    return fields


def add_event_arguments(parser: argparse.ArgumentParser) -> None:
    """The CloudEvent attributes and one flag per data field."""
    event = parser.add_argument_group("the event (instead of --file)")
    event.add_argument("--type", choices=list(DATA_MODELS), help="the event type")
    event.add_argument("--id", help="the event id (default: a fresh UUID)")
    event.add_argument("--source", help=f"the event source (default: {DEFAULT_SOURCE})")
    data = parser.add_argument_group(
        "event data", "the `data` fields of the chosen --type, named as in the JSON Schemas"
    )
    for name, (field, event_types) in data_fields().items():
        data.add_argument(flag_name(name), dest=name, **_argument_options(field, event_types))


def given_data(arguments: argparse.Namespace) -> dict[str, Any]:
    """The data fields set on the command line, under their JSON names."""
    return {
        name: getattr(arguments, name)
        for name in data_fields()
        if getattr(arguments, name) is not None
    }


def event_from_arguments(
    arguments: argparse.Namespace, *, now: dt.datetime | None = None
) -> dict[str, Any]:
    return build_event(
        arguments.type,
        given_data(arguments),
        event_id=arguments.id or str(uuid.uuid4()),
        source=arguments.source or DEFAULT_SOURCE,
        now=now or dt.datetime.now(dt.UTC),
    )


def build_event(
    event_type: str, data: dict[str, Any], *, event_id: str, source: str, now: dt.datetime
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": event_type,
        "time": now.isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }


def _argument_options(field: FieldInfo, event_types: list[str]) -> dict[str, Any]:
    kind = value_type(field.annotation)
    notes = [
        note
        for note, applies in [
            ("required", field.is_required()),
            ("repeatable", get_origin(kind) is list),
        ]
        if applies
    ]
    help_text = ", ".join(event_types) + (f" ({', '.join(notes)})" if notes else "")
    if field.description:
        help_text += f": {field.description}"
    options: dict[str, Any] = {"default": None, "help": help_text}
    if kind is bool:
        return options | {"action": argparse.BooleanOptionalAction}
    if kind is int:
        return options | {"type": int, "metavar": "N"}
    if get_origin(kind) is Literal:
        return options | {"choices": list(get_args(kind))}
    if get_origin(kind) is list:
        return options | {"action": "append", "metavar": "ID"}
    if get_origin(kind) is dict:
        return options | {"type": _json_object, "metavar": "JSON"}
    if kind is dt.date:
        return options | {"metavar": "YYYY-MM-DD"}
    return options | {"metavar": "VALUE"}


def value_type(annotation: Any) -> Any:
    """``Identifier | None`` -> ``str``: what one value on the command line is."""
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value
