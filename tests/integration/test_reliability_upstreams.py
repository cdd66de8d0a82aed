"""Upstream outages and limits against the real stack: the circuit breaker holds events
instead of failing them, the client-side limits keep the service under the upstream's."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from harness import (
    MAX_ATTEMPTS,
    ZUORA_OPERATIONS,
    assert_each_zuora_event_ran_once,
    billing_event,
    event_of_kind,
    eventually,
    metric,
    new_event,
    unique,
)
from stack import Stack

pytestmark = pytest.mark.reliability

OUTAGE_SECONDS = 60


def zuora_events(run: str, count: int) -> list[tuple[dict[str, Any], str]]:
    # Kinds 0..2 are the three Zuora operations; every event its own object.
    return [(event_of_kind(n % 3, f"{run}-{n}"), f"{run}-{n}") for n in range(count)]


async def test_zuora_down_for_a_minute_fails_no_event_and_journals_keep_flowing(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack("outage", sandbox_flags=("--concurrency-limit", "0"))
    run = unique("OUT")
    # A first event brings a token, so the outage below is of the API, as seen mid-day.
    warm_up = billing_event(run)
    await stack.sender.send(warm_up, key=run)
    await stack.watcher.wait_for([warm_up["id"]])

    for operation in (*ZUORA_OPERATIONS, "token"):
        await stack.sandbox.fault(operation=operation, kind="status", status=503)
    outage_started = time.monotonic()
    zuora = zuora_events(run, 150)
    await stack.sender.send_many(zuora)
    await eventually(
        lambda: metric(stack.service.metrics(), "regen_circuit_state", upstream="zuora") == 2,
        timeout=60,
    )
    opened_after = time.monotonic() - outage_started

    journals = [
        (new_event("journal.fixed", {"journalId": f"{run}-J{n}"}), f"J{n}") for n in range(30)
    ]
    await stack.sender.send_many(journals)
    journal_results = await stack.watcher.wait_for(
        [event["id"] for event, _ in journals], timeout=OUTAGE_SECONDS - 15
    )
    assert all(r.topic == stack.topics.succeeded for r in journal_results.values())
    metrics_during = stack.service.metrics()
    assert metric(metrics_during, "regen_circuit_state", upstream="zuora") == 2
    assert metric(metrics_during, "regen_events_held", upstream="zuora") > 0
    assert not any(stack.watcher.results.get(event["id"]) for event, _ in zuora)

    await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - outage_started))
    await stack.sandbox.clear_faults()
    recovered_at = time.monotonic()
    results = await stack.watcher.wait_for([event["id"] for event, _ in zuora], timeout=120)
    recovery_seconds = time.monotonic() - recovered_at

    failed = [r.json()["data"] for r in results.values() if r.topic != stack.topics.succeeded]
    assert failed == []
    assert all(len(stack.watcher.results[event["id"]]) == 1 for event, _ in zuora + journals)
    assert stack.watcher.dead_letters == []
    requests = await stack.sandbox.requests()
    refused = [r for r in requests if r["status"] == 503]
    # Every 503 was turned away unprocessed; each event ran once, when Zuora was back.
    calls_per_key = assert_each_zuora_event_ran_once(
        requests, [warm_up, *(event for event, _ in zuora)], max_calls_per_key=MAX_ATTEMPTS
    )
    # While open, only probes reach Zuora: a trickle, not 150 events x 6 attempts.
    assert len(refused) < 40
    assert metric(stack.service.metrics(), "regen_circuit_state", upstream="zuora") == 0
    figures.update(
        events_sent=len(zuora) + len(journals) + 1,
        outage_seconds=OUTAGE_SECONDS,
        circuit_opened_after_seconds=round(opened_after, 1),
        events_lost=0,
        failed_events_for_healthy_input=len(failed),
        journal_events_succeeded_during_outage=len(journal_results),
        zuora_calls_refused_during_outage=len(refused),
        max_calls_per_idempotency_key=max(calls_per_key.values()),
        time_to_recover_seconds=round(recovery_seconds, 1),
    )


async def test_a_burst_against_a_concurrency_limited_zuora_stops_drawing_429s(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    limit = 8
    stack = await make_stack(
        "burst",
        sandbox_flags=("--concurrency-limit", str(limit), "--latency-ms", "20"),
        REGEN_ZUORA__MAX_CONCURRENCY="32",
    )
    run = unique("BURST")
    events = zuora_events(run, 5000)
    started = time.monotonic()
    await stack.sender.send_many(events)
    results = await stack.watcher.wait_for([event["id"] for event, _ in events], timeout=600)
    elapsed = time.monotonic() - started

    assert all(r.topic == stack.topics.succeeded for r in results.values())
    requests = await stack.sandbox.requests()
    # The 429s were turned away unprocessed: each event ran once.
    calls_per_key = assert_each_zuora_event_ran_once(
        requests, [event for event, _ in events], max_calls_per_key=MAX_ATTEMPTS
    )
    first = min(r["received_at"] for r in requests)
    throttled_at = [r["received_at"] - first for r in requests if r["status"] == 429]
    late_429s = [t for t in throttled_at if t > 5]
    assert late_429s == [], f"{len(late_429s)} answers of 429 after the first 5 s"
    metrics = stack.service.metrics()
    assert metric(metrics, "regen_upstream_concurrency_limit", upstream="zuora") <= limit
    figures.update(
        events_sent=len(events),
        sandbox_concurrency_limit=limit,
        configured_max_concurrency=32,
        answers_429_total=len(throttled_at),
        answers_429_after_5_seconds=len(late_429s),
        last_429_at_seconds=round(max(throttled_at, default=0.0), 2),
        adapted_concurrency_limit=metric(
            metrics, "regen_upstream_concurrency_limit", upstream="zuora"
        ),
        events_failed=0,
        max_calls_per_idempotency_key=max(calls_per_key.values()),
        seconds_to_finish=round(elapsed, 1),
    )


async def test_token_endpoint_429_and_503_are_retried_like_any_transient_error(
    make_stack: Callable[..., Awaitable[Stack]], figures: dict[str, object]
) -> None:
    stack = await make_stack("token", sandbox_flags=("--concurrency-limit", "0"))
    await stack.sandbox.fault(operation="token", kind="status", status=429, times=1, retryAfter=1)
    await stack.sandbox.fault(operation="token", kind="status", status=503, times=1)
    run = unique("TOK")
    events = zuora_events(run, 20)
    await stack.sender.send_many(events)
    results = await stack.watcher.wait_for([event["id"] for event, _ in events])
    assert all(r.topic == stack.topics.succeeded for r in results.values())
    token_requests = await stack.sandbox.requests("token")
    # Single-flight: 20 events waiting for a token made 3 token requests, not 20 or 60.
    assert [r["status"] for r in token_requests] == [429, 503, 200]
    figures.update(events_sent=len(events), token_requests=3, events_failed=0)


async def test_an_idempotency_key_still_in_progress_is_retried_with_the_same_key(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("conflict", sandbox_flags=("--concurrency-limit", "0"))
    run = unique("IDEM")
    await stack.sandbox.fault(operation="billing", kind="status", status=409, times=2, match=run)
    event = billing_event(run)
    await stack.sender.send(event, key=run)
    result = (await stack.watcher.wait_for([event["id"]]))[event["id"]]
    assert result.topic == stack.topics.succeeded
    calls = await stack.sandbox.requests("billing", match=run)
    assert [c["status"] for c in calls] == [409, 409, 200]
    assert len({c["headers"]["idempotency-key"] for c in calls}) == 1
