"""What operators see: metrics without ids, JSON logs with event coordinates, no secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import httpx
from harness import EventSender, ResultWatcher, eventually, metric, new_event, unique
from stack import PARTITIONS, SANDBOX_API_TOKEN, SANDBOX_CLIENT_SECRET, ServiceProcess, Stack


async def test_metrics_logs_and_health(
    regen_service: ServiceProcess, sender: EventSender, watcher: ResultWatcher
) -> None:
    document = unique("INV")
    event = new_event(
        "billing.document.fixed", {"documentType": "Invoice", "documentNumber": document}
    )
    bad_key = unique("bad")
    await sender.send(event, key=document)
    await sender.send(b"not json", key=bad_key)
    await watcher.wait_for([event["id"]])
    await watcher.wait_for_keys([bad_key.encode()])

    async with httpx.AsyncClient(base_url=regen_service.http_url) as http:
        live = await http.get("/health/live")
        ready = await http.get("/health/ready")
    assert live.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"consuming": True, "brokerReachable": True}

    metrics = regen_service.metrics()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert (
        samples[
            'regen_results_total{operation="regenerate_billing_transactions",'
            'outcome="succeeded",reason=""}'
        ]
        >= 1
    )
    assert (
        samples['regen_results_total{operation="none",outcome="failed",reason="invalid_event"}']
        >= 1
    )
    assert samples['regen_events_received_total{type="billing.document.fixed"}'] >= 1
    assert (
        samples[
            'regen_upstream_requests_total{operation="regenerate_billing_transactions",'
            'outcome="succeeded"}'
        ]
        >= 1
    )
    assert (
        samples[
            "regen_upstream_request_duration_seconds_count{"
            'operation="regenerate_billing_transactions"}'
        ]
        >= 1
    )
    assert samples['regen_dead_letters_total{reason="invalid_event"}'] >= 1
    assert samples['regen_token_refreshes_total{outcome="success"}'] >= 1
    assert "regen_events_in_flight" in samples
    commits = 'regen_offset_commits_total{outcome="success"}'
    assert commits in samples
    await eventually(lambda: f"{commits} 0.0" not in regen_service.metrics())
    assert any(name.startswith("regen_faststream_received_messages_total") for name in samples)
    for secret_or_id in (event["id"], document, SANDBOX_CLIENT_SECRET, SANDBOX_API_TOKEN):
        assert secret_or_id not in metrics

    log_text = regen_service.process.log_path.read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    # Every line written while the event was handled carries its coordinates (the token
    # fetch its call needed, too); one of them is its result line.
    [succeeded] = [
        line
        for line in lines
        if line.get("event_id") == event["id"] and line["message"].startswith("regeneration ")
    ]
    assert succeeded["message"] == "regeneration succeeded"
    assert succeeded["operation"] == "regenerate_billing_transactions"
    assert succeeded["type"] == "billing.document.fixed"
    assert {"topic", "partition", "offset", "level", "time"} <= succeeded.keys()
    for secret in (SANDBOX_CLIENT_SECRET, SANDBOX_API_TOKEN, "Bearer "):
        assert secret not in log_text


async def test_consumer_lag_is_exported_per_partition_and_falls_to_zero(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    # The upstream answers 503 to every call until released, and the service retries far
    # longer than the test waits: nothing finishes, so each partition's lag is exactly the
    # backlog sent to it. Partition 0 gets none: an idle partition is reported too, as 0.
    backlog = list(range(PARTITIONS))
    stack = await make_stack(
        "lag",
        start=False,
        REGEN_PROCESSING__MAX_ATTEMPTS="100",
        REGEN_CIRCUIT__FAILURE_THRESHOLD="1000",
    )
    run = unique("LAG")
    await stack.sandbox.fault(operation="journal", kind="status", status=503, match=run)
    events = {
        partition: [
            new_event("journal.fixed", {"journalId": f"{run}-{partition}-{n}"})
            for n in range(count)
        ]
        for partition, count in enumerate(backlog)
    }
    for partition, sent in events.items():
        await stack.sender.send_many(
            ((event, event["data"]["journalId"]) for event in sent), partition=partition
        )
    event_ids = [event["id"] for sent in events.values() for event in sent]

    def lag() -> list[float] | None:
        """Every partition's lag, or None while one is not reported yet."""
        metrics = stack.service.metrics()
        try:
            return [
                metric(metrics, "regen_consumer_lag", topic=stack.topics.input, partition=str(n))
                for n in range(PARTITIONS)
            ]
        except AssertionError:
            return None

    await asyncio.to_thread(stack.service.start)
    await stack.sandbox.wait_for_requests("journal", run, count=len(event_ids))
    await eventually(lambda: lag() == backlog, timeout=30)
    assert not any(stack.watcher.results.get(event_id) for event_id in event_ids)

    await stack.sandbox.clear_faults()
    results = await stack.watcher.wait_for(event_ids, timeout=60)
    assert {result.topic for result in results.values()} == {stack.topics.succeeded}
    await eventually(lambda: lag() == [0.0] * PARTITIONS, timeout=30)
