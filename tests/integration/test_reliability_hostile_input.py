"""Hostile input thrown at a running service: random bytes, random JSON and near-valid
CloudEvents. The service never crashes, and every record gets exactly one result; every
failed one exactly one dead-letter copy."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from harness import nested, new_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stack import Stack

pytestmark = pytest.mark.reliability

VALID_DATA: dict[str, dict[str, Any]] = {
    "billing.document.fixed": {"documentType": "Invoice", "documentId": "8a8aa1"},
    "booking.fixed": {"objectType": "Subscription", "subscriptionName": "A-S0001"},
    "account.charges.fixed": {
        "accountId": "8a8a01",
        "invoiceDate": "2026-11-01",
        "targetDate": "2026-11-01",
    },
    "journal.fixed": {"journalId": "BJO-1234-5678"},
}
NASTY_TEXT = st.one_of(
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(
        [
            "../../v1/accounts",
            "..%2f..%2fadmin",
            "a/b?c=d#e",
            "\u0000\u0001\u001b[31m",
            "\r\nX-Injected: 1",
            "%00",
            "ÿ\ufeff\u202e",
            "\U0001d518\U0001d52b\U0001d526",
            " ",
            "",
        ]
    ),
    st.builds(lambda n: "x" * n, st.integers(min_value=1_000, max_value=200_000)),
)
WRONG_TYPES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    NASTY_TEXT,
)


@st.composite
def near_valid_events(draw: st.DrawFn) -> bytes:
    event_type = draw(st.sampled_from(sorted(VALID_DATA)))
    event = new_event(event_type, dict(VALID_DATA[event_type]), id=str(uuid.uuid4()))
    target = draw(st.sampled_from(["envelope", "data", "extra", "nesting"]))
    if target == "envelope":
        event[draw(st.sampled_from(["specversion", "id", "source", "type", "time"]))] = draw(
            WRONG_TYPES
        )
    elif target == "data":
        field = draw(st.sampled_from(sorted(event["data"])))
        event["data"][field] = draw(WRONG_TYPES)
    elif target == "extra":
        event["data"][draw(st.text(min_size=1, max_size=20))] = draw(WRONG_TYPES)
    else:
        # Deeper than the service accepts (32); deeper still is raw bytes in test_bad_input,
        # since encoding it here would hit this process's own recursion limit.
        event["data"]["journal"] = nested(draw(st.integers(10, 400)))
    return json.dumps(event, allow_nan=False).encode("utf-8", "surrogatepass")


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=10), children, max_size=5)
        ),
        max_leaves=25,
    )


HOSTILE = st.one_of(
    st.binary(max_size=3000),
    _json_values().map(lambda value: json.dumps(value).encode()),
    near_valid_events(),
)


@pytest.fixture
async def hostile_stack(make_stack: Callable[..., Awaitable[Stack]]) -> Stack:
    return await make_stack("hostile")


TALLY: dict[str, int] = {"records": 0, "failed": 0, "succeeded": 0, "dead_letters": 0}


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=st.lists(HOSTILE, min_size=10, max_size=25))
async def test_hostile_input_never_crashes_and_every_record_gets_exactly_one_outcome(
    hostile_stack: Stack, figures: dict[str, object], payloads: list[bytes]
) -> None:
    stack = hostile_stack
    keys = [f"hostile-{uuid.uuid4()}".encode() for _ in payloads]
    for key, payload in zip(keys, payloads, strict=True):
        await stack.sender.send(payload, key=key.decode())
    results = await stack.watcher.wait_for_keys(keys, timeout=120)

    for key, payload in zip(keys, payloads, strict=True):
        result = results[key].json()
        assert len(stack.watcher.results_by_key[key]) == 1, payload[:200]
        if result["type"] == "regeneration.failed":
            assert result["data"]["reason"] in {"invalid_event", "rejected"}, result["data"]
            [dead_letter] = await stack.watcher.wait_for_dead_letters(
                1, lambda record, key=key: record.key == key, timeout=30
            )
            assert dead_letter.value == payload
            TALLY["failed"] += 1
            TALLY["dead_letters"] += 1
        else:
            # A mutation can still leave a valid event (a fine unicode id, say).
            TALLY["succeeded"] += 1
    TALLY["records"] += len(payloads)
    async with httpx.AsyncClient() as http:
        live = await http.get(f"{stack.service.http_url}/health/live", timeout=5)
    assert live.status_code == 200
    assert stack.service.process.returncode is None
    figures.update(TALLY, service_restarts=0)


async def test_events_above_the_size_limit_fail_as_invalid_with_a_dead_letter(
    hostile_stack: Stack,
) -> None:
    stack = hostile_stack
    limit = 1024 * 1024
    too_large = json.dumps(
        new_event("journal.fixed", {"journalId": "BJO-1"}) | {"padding": "x" * limit}
    ).encode()
    await stack.sender.send(too_large, key="too-large")
    result = (await stack.watcher.wait_for_keys([b"too-large"]))[b"too-large"].json()
    assert result["data"]["reason"] == "invalid_event"
    assert "above the limit of 1048576" in result["data"]["message"]
    [dead_letter] = await stack.watcher.wait_for_dead_letters(
        1, lambda record: record.key == b"too-large"
    )
    # Whole: the dead-letter producer takes up to REGEN_KAFKA__MAX_REQUEST_BYTES (8 MiB).
    assert dead_letter.value == too_large
    assert "regen-truncated-from-bytes" not in dead_letter.headers
