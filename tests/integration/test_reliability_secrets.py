"""No configured secret or token ever leaves the process: not in logs, metrics, result
events or dead letters, whatever path an event takes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from harness import billing_event, new_event, unique
from stack import SANDBOX_API_TOKEN, SANDBOX_CLIENT_SECRET, Stack

pytestmark = pytest.mark.reliability


async def test_known_secrets_appear_nowhere_in_any_output(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack(
        "secrets",
        sandbox_flags=("--concurrency-limit", "0"),
        REGEN_LOG__LEVEL="DEBUG",  # the most verbose the service ever is
        REGEN_PROCESSING__MAX_ATTEMPTS="2",
    )
    run = unique("SEC")
    # Every path: success, token revoked mid-way, permanent refusal, transient refusal until
    # exhausted, refusal of the SoftwareOne token, invalid input.
    await stack.sandbox.fault(
        operation="billing", kind="success_false", code="53100320", match=f"{run}-rej"
    )
    await stack.sandbox.fault(operation="booking", kind="status", status=503, match=f"{run}-503")
    await stack.sandbox.fault(operation="journal", kind="status", status=401, match=f"{run}-401")
    events = [
        billing_event(f"{run}-ok"),
        billing_event(f"{run}-rej"),
        new_event(
            "booking.fixed", {"objectType": "OrderLineItem", "orderLineItemId": f"{run}-503"}
        ),
        new_event("journal.fixed", {"journalId": f"{run}-401"}),
        new_event("journal.fixed", {"journalId": f"{run}-ok"}),
    ]
    for event in events[:2]:
        await stack.sender.send(event, key=event["id"])
    await stack.watcher.wait_for([event["id"] for event in events[:2]])
    await stack.sandbox.revoke_tokens()
    for event in events[2:]:
        await stack.sender.send(event, key=event["id"])
    await stack.sender.send(b'{"broken": ', key=f"{run}-invalid")
    await stack.watcher.wait_for([event["id"] for event in events], timeout=90)
    await stack.watcher.wait_for_keys([f"{run}-invalid".encode()])

    metrics = stack.service.metrics()
    stack.service.process.terminate()
    logs = stack.service.process.log_path.read_text()
    published = [
        record.value or b"" for records in stack.watcher.results.values() for record in records
    ]
    dead_letter_headers = [
        name.encode() + b"=" + value
        for record in stack.watcher.dead_letters
        for name, value in record.headers.items()
    ]
    outputs = {
        "logs": logs.encode(),
        "metrics": metrics.encode(),
        "results": b"\n".join(published),
        "dead-letter headers": b"\n".join(dead_letter_headers),
    }
    secrets = [SANDBOX_CLIENT_SECRET.encode(), SANDBOX_API_TOKEN.encode(), b"Bearer "]
    leaks = [
        f"{secret!r} in {where}"
        for where, text in outputs.items()
        for secret in secrets
        if secret in text
    ]
    assert leaks == []
    reasons = sorted(
        record.json()["data"].get("reason", "succeeded")
        for records in stack.watcher.results.values()
        for record in records
    )
    # The paths really were taken.
    assert reasons == [
        "invalid_event",
        "rejected",
        "retries_exhausted",
        "succeeded",
        "succeeded",
        "unauthorized",
    ]
    assert '"level": "DEBUG"' in logs, "DEBUG logging was on"
    figures.update(
        paths_exercised=len(reasons),
        bytes_of_output_scanned=sum(len(text) for text in outputs.values()),
        secrets_found=0,
    )
