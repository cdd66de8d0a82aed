"""Turning the bytes of a Kafka record into a typed event, or a precise reason why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from regen_sync.domain.events import EVENT_TYPES, CloudEvent, DataFixedEvent

_event_adapter: TypeAdapter[DataFixedEvent] = TypeAdapter(DataFixedEvent)
_MAX_PROBLEMS = 10
_MAX_PROBLEM_CHARS = 300


@dataclass(frozen=True, slots=True)
class InvalidEvent:
    """Input that can never be regenerated; it still gets a failed event and a dead letter."""

    problems: tuple[str, ...]
    event_id: str | None = None
    event_type: str | None = None


MAX_NESTING = 32
"""Deepest nesting of objects and arrays accepted in an event; real ones use four or five."""


def parse_event(raw: bytes | None, *, max_bytes: int) -> DataFixedEvent | InvalidEvent:
    if raw is None or not raw:
        return InvalidEvent(("the record has no value",))
    if len(raw) > max_bytes:
        return InvalidEvent((f"the event is {len(raw)} bytes, above the limit of {max_bytes}",))
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return InvalidEvent((f"not JSON: {error}"[:_MAX_PROBLEM_CHARS],))
    except RecursionError:
        return InvalidEvent(("not JSON: nested too deeply",))
    if not isinstance(document, dict):
        return InvalidEvent((f"not a CloudEvent: a JSON {type(document).__name__}, not an object",))
    if _depth(document) > MAX_NESTING:
        # Valid JSON, but the event is later serialised again (to compare events, to call
        # SoftwareOne), and that would fail at a depth JSON parsing allowed.
        return InvalidEvent(
            (f"nested deeper than {MAX_NESTING} levels",),
            _readable_string(document.get("id")),
            _readable_string(document.get("type")),
        )

    event_id = _readable_string(document.get("id"))
    event_type = _readable_string(document.get("type"))
    try:
        CloudEvent.model_validate(document)
    except ValidationError as error:
        return InvalidEvent(_describe(error, prefix="not a CloudEvent 1.0: "), event_id, event_type)
    if event_type not in EVENT_TYPES:
        return InvalidEvent(
            (f"unknown event type {event_type!r}; expected one of {', '.join(EVENT_TYPES)}",),
            event_id,
            event_type,
        )
    try:
        return _event_adapter.validate_python(document)
    except ValidationError as error:
        return InvalidEvent(_describe(error), event_id, event_type)


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON document, iteratively (a deep one must not recurse)."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        current, depth = pending.pop()
        deepest = max(deepest, depth)
        if depth > MAX_NESTING:
            break
        if isinstance(current, dict):
            pending.extend((child, depth + 1) for child in current.values())
        elif isinstance(current, list):
            pending.extend((child, depth + 1) for child in current)
    return deepest


def _readable_string(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 255 else None


def _describe(error: ValidationError, prefix: str = "") -> tuple[str, ...]:
    problems = []
    for detail in error.errors(include_input=False, include_url=False)[:_MAX_PROBLEMS]:
        # The first part of the location is the union tag pydantic adds; it says nothing new.
        location = ".".join(str(part) for part in detail["loc"] if part not in EVENT_TYPES)
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{location or 'event'}: {message}"[:_MAX_PROBLEM_CHARS])
    return tuple(problems)
