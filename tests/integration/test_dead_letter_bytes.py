"""Dead letters keep every byte the broker accepted on the input, on the real broker: a 1.5 MiB
input (above MAX_EVENT_BYTES, so invalid) is dead-lettered whole. Only a dead letter refused as
too large is cut to 64 KiB, with ``regen-truncated-from-bytes``, counted and logged.

Tansu 0.6.0 has no record size limit of its own (it took 64 MiB records and ignores a topic's
``max.message.bytes``), so the refusal is provoked here with the producer's own limit,
REGEN_KAFKA__MAX_REQUEST_BYTES at its minimum; a broker's refusal is in
tests/unit/test_publishing.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from harness import Received, eventually, metric, new_event
from stack import Stack

INPUT_BYTES = 1536 * 1024
CUT_BYTES = 64 * 1024
TRUNCATED_FROM = "regen-truncated-from-bytes"
INPUT_HEADERS = [
    ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    # UTF-8: FastStream's batch parser decodes every header value and raises on other bytes.
    ("origin", "Zürich €".encode()),
]


def oversized_event() -> bytes:
    """A CloudEvent of exactly INPUT_BYTES: above the 1 MiB MAX_EVENT_BYTES."""
    event = new_event("journal.fixed", {"journalId": "BJO-1"}) | {"padding": ""}
    event["padding"] = "x" * (INPUT_BYTES - len(json.dumps(event).encode()))
    encoded = json.dumps(event).encode()
    assert len(encoded) == INPUT_BYTES
    return encoded


def counted(stack: Stack, name: str) -> float:
    try:
        return metric(stack.service.metrics(), name, reason="invalid_event")
    except AssertionError:  # not exported before the first dead letter
        return 0.0


async def failed_and_dead_lettered(stack: Stack, key: str, value: bytes) -> tuple[Any, Received]:
    """The ``data`` of the event's regeneration.failed, and its dead letter."""
    await stack.sender.send(value, key=key, headers=INPUT_HEADERS)
    result = (await stack.watcher.wait_for_keys([key.encode()]))[key.encode()]
    assert result.topic == stack.topics.failed
    [dead_letter] = await stack.watcher.wait_for_dead_letters(
        1, lambda record: record.key == key.encode()
    )
    assert dead_letter.value is not None
    # The counters move once the dead letter is acknowledged; the watcher may see it first.
    await eventually(lambda: counted(stack, "regen_dead_letters_total") == 1)
    return result.json()["data"], dead_letter


async def test_a_dead_letter_keeps_every_byte_of_an_oversized_input(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack("dlq-bytes")
    value = oversized_event()

    failed, dead_letter = await failed_and_dead_lettered(stack, "oversized", value)

    assert failed["reason"] == "invalid_event"
    assert f"above the limit of {1024 * 1024}" in failed["message"]
    assert dead_letter.value is not None
    assert len(dead_letter.value) == len(value) == INPUT_BYTES
    assert dead_letter.value == value
    assert TRUNCATED_FROM not in dead_letter.headers
    assert all(dead_letter.headers[name] == header for name, header in INPUT_HEADERS)
    assert dead_letter.headers["regen-error-reason"] == b"invalid_event"
    assert counted(stack, "regen_dead_letters_truncated_total") == 0
    figures.update(input_bytes=len(value), dead_letter_bytes=len(dead_letter.value), truncated=0)


async def test_a_dead_letter_refused_as_too_large_is_cut_counted_and_logged(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    # 1 MiB + 16 KiB: what the dead-letter producer allowed before REGEN_KAFKA__MAX_REQUEST_BYTES.
    stack = await make_stack("dlq-cut", REGEN_KAFKA__MAX_REQUEST_BYTES=str(1024 * 1024))
    value = oversized_event()

    failed, dead_letter = await failed_and_dead_lettered(stack, "cut", value)

    assert failed["reason"] == "invalid_event"
    assert dead_letter.value == value[:CUT_BYTES]
    assert dead_letter.headers[TRUNCATED_FROM] == str(INPUT_BYTES).encode()
    assert all(dead_letter.headers[name] == header for name, header in INPUT_HEADERS)
    assert counted(stack, "regen_dead_letters_truncated_total") == 1
    line = await asyncio.to_thread(
        stack.service.process.wait_for_line, '"dead letter truncated', timeout=10
    )
    logged = json.loads(line)
    assert logged["level"] == "WARNING"
    assert logged["topic"] == stack.topics.input
    assert {"partition", "offset"} <= logged.keys()
    assert (logged["value_bytes"], logged["kept_bytes"]) == (INPUT_BYTES, CUT_BYTES)
    assert len(line) < 2000, "the value must never be logged"
    figures.update(input_bytes=len(value), dead_letter_bytes=len(dead_letter.value), truncated=1)
