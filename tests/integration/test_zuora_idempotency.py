"""Zuora's Idempotency-Key store, as the sandbox models it: every processed answer is kept
under its key and replayed. The service repeats a key only while the outcome is unknown, walks
the same keys after a crash, and starts new ones when an operator re-drives an event."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from harness import billing_event, eventually, kafka_only, regen_sync, unique
from stack import Stack


def calls(logged: list[dict[str, Any]]) -> list[tuple[int | None, bool, str]]:
    """(status, replayed, key) of each request, keys numbered by first appearance."""
    numbers: dict[str, str] = {}
    return [
        (
            call["status"],
            call["replayed"],
            numbers.setdefault(call["headers"]["idempotency-key"], f"key{len(numbers)}"),
        )
        for call in logged
    ]


async def test_an_attempt_that_timed_out_is_repeated_under_its_key_and_gets_the_stored_answer(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack(
        "idempotency-timeout",
        REGEN_ZUORA__TIMEOUT_SECONDS="0.5",
        # Room to keep asking (409: still in progress) until the first request is done.
        REGEN_PROCESSING__MAX_ATTEMPTS="30",
    )
    document = unique("INV")
    await stack.sandbox.fault(
        operation="billing", kind="latency", latencyMs=1500, times=1, match=document
    )
    event = billing_event(document)
    await stack.sender.send(event, key=document)

    result = (await stack.watcher.wait_for([event["id"]]))[event["id"]]

    assert result.topic == stack.topics.succeeded
    made = calls(await stack.sandbox.requests("billing", match=document))
    assert {key for _, _, key in made} == {"key0"}, "no answer, so the same key every time"
    assert made[0][:2] == (200, False), "the first request was processed after the client left"
    assert made[-1][:2] == (200, True), "and its stored answer is what the service got"
    assert all(status == 409 for status, _, _ in made[1:-1]), "still in progress meanwhile"


async def test_a_crash_after_a_stored_failure_walks_the_same_keys_without_executing_again(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("idempotency-crash", start=False)
    document = unique("INV")
    # Zuora fails the first request and asks for a minute's patience; the service is killed
    # while it waits.
    await stack.sandbox.fault(
        operation="billing", kind="status", status=500, retryAfter=60, times=1, match=document
    )
    first = stack.new_service()
    await asyncio.to_thread(first.start)
    event = billing_event(document)
    await stack.sender.send(event, key=document)
    await stack.sandbox.wait_for_requests("billing", document)
    first.process.kill()

    # The next owner honours Retry-After too; a short cap keeps the test short.
    second = stack.new_service(REGEN_PROCESSING__MAX_RETRY_AFTER_SECONDS="0.1")
    await asyncio.to_thread(second.start)
    result = (await stack.watcher.wait_for([event["id"]], timeout=90))[event["id"]]

    assert result.topic == stack.topics.succeeded
    assert calls(await stack.sandbox.requests("billing", match=document)) == [
        (500, False, "key0"),  # executed and stored, then the crash
        (500, True, "key0"),  # the redelivered event: Zuora's stored answer, not a new run
        (200, False, "key1"),  # the next key of the walk: executed once
    ]


async def test_a_failure_re_driven_after_the_fix_is_regenerated_under_a_new_key(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("idempotency-redrive")
    document = unique("INV")
    # The document is missing once; the operator fixes it (the fault is used up), then
    # re-drives the event.
    await stack.sandbox.fault(
        operation="billing", kind="status", status=404, times=1, match=document
    )
    event = billing_event(document)
    await stack.sender.send(event, key=document)
    failed = (await stack.watcher.wait_for([event["id"]]))[event["id"]]
    assert failed.json()["data"]["reason"] == "not_found"
    await stack.watcher.wait_for_dead_letters(1, lambda record: True)

    run = await regen_sync("redrive", "--reason", "not_found", env=kafka_only(stack.service.env))
    assert run.returncode == 0, run.stdout + run.stderr
    await eventually(lambda: len(stack.watcher.results[event["id"]]) == 2, timeout=60)

    assert stack.watcher.results[event["id"]][1].topic == stack.topics.succeeded
    assert calls(await stack.sandbox.requests("billing", match=document)) == [
        (404, False, "key0"),
        (200, False, "key1"),  # not the stored 404 again
    ]
