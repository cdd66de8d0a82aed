"""Coalescing against the real broker and sandbox: identical events that wait for the same
object share one upstream call, and each still gets its own result naming that call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from harness import eventually, metric, new_event, unique
from stack import Stack

SLOW_CALL_MS = 5000


async def test_identical_waiting_events_share_one_call_and_later_or_different_ones_do_not(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    # One SoftwareOne slot, held by a slow call, so the object's first event waits for it.
    stack = await make_stack(
        "coalesce",
        sandbox_flags=("--concurrency-limit", "0"),
        REGEN_SOFTWAREONE__MAX_CONCURRENCY="1",
    )
    run = unique("COAL")
    blocker_id, object_id = f"{run}-BLOCK", f"{run}-X"
    await stack.sandbox.fault(
        operation="journal", kind="latency", latencyMs=SLOW_CALL_MS, match=blocker_id
    )
    blocker = new_event("journal.fixed", {"journalId": blocker_id})
    await stack.sender.send(blocker, key=blocker_id)

    def blocker_call_started() -> bool:
        logged = httpx.get(
            f"{stack.sandbox.base_url}/_sandbox/requests", params={"operation": "journal"}
        ).json()
        return any(blocker_id in request["path"] for request in logged)

    await eventually(blocker_call_started)

    same = [new_event("journal.fixed", {"journalId": object_id}) for _ in range(3)]
    other_flags = new_event(
        "journal.fixed", {"journalId": object_id, "journal": {"notes": "different request"}}
    )
    await stack.sender.send_many([(event, object_id) for event in [*same, other_flags]])
    # All four are read (in flight) while the slot is still held by the slow call.
    await eventually(
        lambda: metric(stack.service.metrics(), "regen_events_in_flight") == 5, timeout=10
    )
    assert blocker["id"] not in stack.watcher.results, "the slot was freed too early to test"

    results = await stack.watcher.wait_for([e["id"] for e in [blocker, *same, other_flags]])
    assert all(result.topic == stack.topics.succeeded for result in results.values())
    served_by = {
        event["id"]: results[event["id"]].json()["data"]["servedByEventId"] for event in same
    }
    assert served_by == dict.fromkeys(served_by, same[0]["id"])
    assert results[other_flags["id"]].json()["data"]["servedByEventId"] == other_flags["id"]

    # An identical event that arrives after its object's calls went out gets a call of its own.
    late = new_event("journal.fixed", {"journalId": object_id})
    await stack.sender.send(late, key=object_id)
    late_result = (await stack.watcher.wait_for([late["id"]]))[late["id"]]
    assert late_result.json()["data"]["servedByEventId"] == late["id"]

    calls = await stack.sandbox.requests("journal", match=object_id)
    assert len(calls) == 3, "one call for the three identical events, one each for the others"
    exposition = stack.service.metrics()
    assert metric(exposition, "regen_coalesced_events_total", operation="regenerate_journal") == 2
    assert metric(exposition, "regen_events_in_flight") == 0
