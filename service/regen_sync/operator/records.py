"""What the operator commands read of a Kafka record: its coordinates, headers and value."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol


class Record(Protocol):
    """What is read of a Kafka record (aiokafka's ConsumerRecord)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def last_header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    # The last one is what regen-sync added when the record last failed: earlier ones can
    # only come from a producer copying a dead letter's headers into a new record.
    values = [value for key, value in headers if key == name]
    return values[-1].decode("utf-8", "replace") if values else None


def json_object(value: bytes | None) -> dict[str, Any] | None:
    """The value as a JSON object; None for anything else (an input may be anything)."""
    if value is None:
        return None
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return document if isinstance(document, dict) else None
