"""`regen-sync trace` as a real process against the real broker, sandbox and service: the
timeline of a succeeded, a coalesced, a failed, a re-driven and an unconsumed event."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from harness import (
    Run,
    billing_event,
    eventually,
    kafka_only,
    metric,
    new_event,
    regen_sync,
    topic_names,
    unique,
)
from stack import Stack

from devstack import TansuBroker

SLOW_CALL_MS = 5000
COLUMNS = ("TIME", "RECORD", "WHAT", "REASON", "ATTEMPTS", "DETAILS")


async def trace(stack: Stack, event_id: str, *flags: str) -> Run:
    return await regen_sync("trace", event_id, *flags, env=kafka_only(stack.service.env))


async def trace_json(stack: Stack, event_id: str, *flags: str) -> tuple[Run, dict[str, Any]]:
    run = await trace(stack, event_id, "--json", *flags)
    document: dict[str, Any] = json.loads(run.stdout)
    return run, document


def rows(run: Run) -> list[dict[str, str]]:
    """The timeline's rows, cut at the heading's column positions."""
    lines = run.stdout.splitlines()
    heading = next(index for index, line in enumerate(lines) if line.startswith("TIME "))
    starts = [lines[heading].index(name) for name in COLUMNS]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    table = []
    for line in lines[heading + 1 :]:
        if line.startswith(("status: ", "note: ")):
            break
        table.append(
            {
                name: line[start:end].strip()
                for name, (start, end) in zip(COLUMNS, bounds, strict=True)
            }
        )
    return table


def whats(run: Run) -> list[str]:
    return [row["WHAT"] for row in rows(run)]


def origin(topic: str, partition: int, offset: int) -> str:
    return f"{topic}/{partition}/{offset}"


async def test_a_succeeded_event_shows_its_input_and_result_with_the_upstream_ids(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("trace-ok")
    document = unique("INV")
    event = billing_event(document)
    await stack.sender.send(event, key=document)
    result = (await stack.watcher.wait_for([event["id"]]))[event["id"]]
    id_list = result.json()["data"]["upstream"]["idList"]

    run = await trace(stack, event["id"])
    json_run, traced = await trace_json(stack, event["id"])

    assert run.returncode == 0, run.stdout + run.stderr
    assert whats(run) == ["received", "succeeded"]
    received, succeeded = rows(run)
    assert received["RECORD"].startswith(f"{stack.topics.input}/")
    assert received["DETAILS"] == "billing.document.fixed"
    assert succeeded["RECORD"] == origin(result.topic, result.partition, result.offset)
    assert succeeded["ATTEMPTS"] == "1"
    assert succeeded["DETAILS"] == f"idList={','.join(id_list)}"
    assert f"status: succeeded at {traced['outcome']['time']}, {succeeded['RECORD']}" in run.stdout

    assert json_run.returncode == 0, json_run.stderr
    assert traced["eventId"] == event["id"]
    assert (traced["status"], traced["inputSeen"], traced["window"]["duration"]) == (
        "succeeded",
        True,
        "24h",
    )
    assert [entry["what"] for entry in traced["entries"]] == ["received", "succeeded"]
    assert traced["entries"][0]["topic"] == stack.topics.input
    assert traced["entries"][0]["eventType"] == "billing.document.fixed"
    assert traced["entries"][1] | {"time": None} == {
        "time": None,
        "topic": result.topic,
        "partition": result.partition,
        "offset": result.offset,
        "what": "succeeded",
        "eventType": "billing.document.fixed",
        "source": None,
        "reason": None,
        "message": None,
        "attempts": 1,
        "servedBy": None,
        "upstreamIds": {"idList": id_list},
        "httpStatus": None,
        "retryable": None,
        "upstreamError": None,
        "problems": [],
        "redrive": None,
        "redrivenFrom": None,
        "inputRecord": None,
        "truncated": False,
    }
    assert traced["outcome"] == traced["entries"][1]


async def test_a_coalesced_event_shows_the_event_whose_call_served_it(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    # One SoftwareOne slot, held by a slow call, so the identical events wait together for it
    # (as in test_coalescing.py).
    stack = await make_stack(
        "trace-coalesce",
        sandbox_flags=("--concurrency-limit", "0"),
        REGEN_SOFTWAREONE__MAX_CONCURRENCY="1",
    )
    run_id = unique("TRC")
    blocker_id, object_id = f"{run_id}-BLOCK", f"{run_id}-X"
    await stack.sandbox.fault(
        operation="journal", kind="latency", latencyMs=SLOW_CALL_MS, match=blocker_id
    )
    await stack.sender.send(new_event("journal.fixed", {"journalId": blocker_id}), key=blocker_id)

    def blocker_call_started() -> bool:
        logged = httpx.get(
            f"{stack.sandbox.base_url}/_sandbox/requests", params={"operation": "journal"}
        ).json()
        return any(blocker_id in request["path"] for request in logged)

    await eventually(blocker_call_started)
    first, second, third = (new_event("journal.fixed", {"journalId": object_id}) for _ in range(3))
    await stack.sender.send_many([(event, object_id) for event in (first, second, third)])
    await eventually(
        lambda: metric(stack.service.metrics(), "regen_events_in_flight") == 4, timeout=10
    )
    results = await stack.watcher.wait_for([first["id"], second["id"], third["id"]])
    assert results[second["id"]].json()["data"]["servedByEventId"] == first["id"], (
        "not coalesced: the slot was freed too early to test"
    )

    run = await trace(stack, second["id"])
    json_run, traced = await trace_json(stack, second["id"])
    leader = await trace(stack, first["id"])

    assert run.returncode == 0, run.stdout + run.stderr
    assert whats(run) == ["received", "succeeded"]
    assert rows(run)[1]["DETAILS"].startswith(f"served by {first['id']}; journalId={object_id}")
    assert json_run.returncode == 0
    assert traced["status"] == "succeeded"
    assert traced["outcome"]["servedBy"] == first["id"]
    assert traced["outcome"]["upstreamIds"] == {"journalId": object_id}
    assert leader.returncode == 0
    assert whats(leader) == ["received", "succeeded"]
    assert rows(leader)[1]["DETAILS"] == f"journalId={object_id}"
    (served,) = [line for line in leader.stdout.splitlines() if "also served" in line]
    assert served.startswith("note: its upstream call also served 2 other events: ")
    assert sorted(served.split(": ")[-1].split(", ")) == sorted([second["id"], third["id"]])


async def test_a_failed_event_shows_its_dead_letter_and_failure_as_an_outcome(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("trace-failed")
    journal = unique("missing-JRN")  # the sandbox answers 404 for it
    event = new_event("journal.fixed", {"journalId": journal})
    await stack.sender.send(event, key=journal)
    result = (await stack.watcher.wait_for([event["id"]]))[event["id"]]
    (dead_letter,) = await stack.watcher.wait_for_dead_letters(1, lambda record: True)

    run = await trace(stack, event["id"])
    json_run, traced = await trace_json(stack, event["id"])

    assert run.returncode == 0, run.stdout + run.stderr
    assert whats(run) == ["received", "dead-lettered", "failed"]
    received, dead, failed = rows(run)
    assert dead["RECORD"] == origin(dead_letter.topic, dead_letter.partition, dead_letter.offset)
    assert dead["REASON"] == failed["REASON"] == "not_found"
    assert dead["DETAILS"].startswith(f"input {received['RECORD']}; ")
    assert failed["RECORD"] == origin(result.topic, result.partition, result.offset)
    message = result.json()["data"]["message"]
    assert failed["DETAILS"] == f"{message}; Journal {journal} was not found."
    assert "status: failed (not_found) at " in run.stdout

    assert json_run.returncode == 0
    assert traced["status"] == "failed"
    outcome = traced["outcome"]
    assert (outcome["reason"], outcome["httpStatus"], outcome["retryable"]) == (
        "not_found",
        404,
        False,
    )
    assert outcome["message"] == message
    assert outcome["upstreamError"]["detail"] == f"Journal {journal} was not found."
    assert traced["entries"][1]["inputRecord"] == received["RECORD"]


async def test_a_redriven_event_shows_the_failure_the_redrive_and_its_success(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("trace-redrive")
    document = unique("INV")
    # Only the first call fails: the re-driven event then succeeds.
    await stack.sandbox.fault(
        operation="billing", kind="status", status=404, times=1, match=document
    )
    event = billing_event(document)
    await stack.sender.send(event, key=document)
    first = (await stack.watcher.wait_for([event["id"]]))[event["id"]]
    assert first.json()["data"]["reason"] == "not_found"
    (dead_letter,) = await stack.watcher.wait_for_dead_letters(1, lambda record: True)
    before = await trace(stack, event["id"])

    redrive = await regen_sync(
        "redrive", "--reason", "not_found", env=kafka_only(stack.service.env)
    )
    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    await eventually(lambda: len(stack.watcher.results[event["id"]]) >= 2, timeout=30)
    second = stack.watcher.results[event["id"]][1]

    run = await trace(stack, event["id"])
    json_run, traced = await trace_json(stack, event["id"])

    assert before.returncode == 0, before.stdout + before.stderr
    assert whats(before) == ["received", "dead-lettered", "failed"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert whats(run) == ["received", "dead-lettered", "failed", "re-driven input", "succeeded"]
    redriven, succeeded = rows(run)[3:]
    dead_letter_origin = origin(dead_letter.topic, dead_letter.partition, dead_letter.offset)
    assert redriven["RECORD"].startswith(f"{stack.topics.input}/")
    assert redriven["DETAILS"] == f"re-drive 1 of dead letter {dead_letter_origin}"
    assert succeeded["RECORD"] == origin(second.topic, second.partition, second.offset)
    assert succeeded["DETAILS"].startswith("idList=")
    assert "status: succeeded at " in run.stdout

    assert json_run.returncode == 0
    assert traced["status"] == "succeeded"
    entries = traced["entries"]
    assert [entry["what"] for entry in entries] == [
        "received",
        "dead_lettered",
        "failed",
        "redriven",
        "succeeded",
    ]
    assert (entries[3]["redrive"], entries[3]["redrivenFrom"]) == (1, dead_letter_origin)
    assert traced["outcome"] == entries[4]


async def test_an_unconsumed_event_is_pending_and_an_unknown_or_too_old_one_not_found(
    make_stack: Callable[..., Awaitable[Stack]], kafka_broker: TansuBroker
) -> None:
    stack = await make_stack("trace-idle", start=False)
    key = unique("JRN")
    earlier = [new_event("journal.fixed", {"journalId": key}) for _ in range(4)]
    event = new_event("journal.fixed", {"journalId": key})
    # One batch, the traced event last: Tansu's end offset for the partition is the batch's
    # first offset + 1, and the event is read all the same.
    await stack.sender.send_many([(each, key) for each in [*earlier, event]], partition=2)
    env = kafka_only(stack.service.env)
    producer = AIOKafkaProducer(
        bootstrap_servers=env["REGEN_KAFKA__BOOTSTRAP_SERVERS"], enable_idempotence=False
    )
    old = new_event("journal.fixed", {"journalId": key})
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.topics.input,
            json.dumps(old).encode(),
            key=key.encode(),
            timestamp_ms=int((time.time() - 2 * 3600) * 1000),
        )
    finally:
        await producer.stop()

    pending = await trace(stack, event["id"])
    _, traced = await trace_json(stack, event["id"])
    unknown = await trace(stack, unique("evt-never-sent"))
    _, unknown_json = await trace_json(stack, unique("evt-never-sent"))
    too_old = await trace(stack, old["id"], "--since", "90m")
    old_enough = await trace(stack, old["id"], "--since", "3h")
    bad_since = await trace(stack, event["id"], "--since", "24x")
    missing_topic = dict(env, REGEN_TOPICS__DEAD_LETTER=unique("trace-missing"))
    no_topic = await regen_sync("trace", event["id"], env=missing_topic)

    assert pending.returncode == 1, pending.stdout + pending.stderr
    assert whats(pending) == ["received"]
    assert rows(pending)[0]["RECORD"] == origin(stack.topics.input, 2, 4)
    assert "status: pending: no outcome after the latest input record yet" in pending.stdout
    assert (traced["status"], traced["outcome"]) == ("pending", None)
    assert [entry["offset"] for entry in traced["entries"]] == [4]

    assert unknown.returncode == 2
    assert unknown.stdout == ""
    assert "not found: no record of it in the last 24h" in unknown.stderr
    assert (unknown_json["status"], unknown_json["entries"]) == ("not_found", [])

    assert too_old.returncode == 2, too_old.stdout + too_old.stderr
    assert "not found: no record of it in the last 90m" in too_old.stderr
    assert old_enough.returncode == 1, old_enough.stdout + old_enough.stderr
    assert whats(old_enough) == ["received"]

    assert bad_since.returncode == 2
    assert "regen-sync trace: --since: '24x' is not a duration" in bad_since.stderr
    assert no_topic.returncode == 2
    assert (
        f"topic {missing_topic['REGEN_TOPICS__DEAD_LETTER']} (REGEN_TOPICS__DEAD_LETTER) "
        "does not exist" in no_topic.stderr
    )
    # Tansu creates a topic any metadata request names: trace's never do.
    assert missing_topic["REGEN_TOPICS__DEAD_LETTER"] not in await topic_names(kafka_broker)
