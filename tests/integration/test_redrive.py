"""`regen-sync redrive` as a real process: the service dead-letters events, the command lists
and republishes them, the service then succeeds under Idempotency-Keys of the re-drive's own,
and the dead-letter topic keeps every record."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from harness import (
    Received,
    ResultWatcher,
    Run,
    Topics,
    billing_event,
    kafka_only,
    new_event,
    regen_sync,
    topic_names,
    unique,
)
from stack import PARTITIONS, Stack

from devstack import TansuBroker, free_port
from regen_sync.kafka.publishing import DLQ_FAILED_AT, DLQ_REASON
from regen_sync.operator.redrive_selection import REDRIVEN_FROM
from regen_sync.processing import REDRIVE_HEADER

TRACEPARENT = ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
INVALID_JOURNAL_ID = "not a journal id!"


async def read_topic(broker: TansuBroker, topic: str) -> list[Received]:
    """Every record of ``topic`` as it is now, in partition and offset order, read by a
    consumer without a group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number) for number in range(PARTITIONS)]
        starts = await consumer.beginning_offsets(partitions)
        # Tansu's end offset is the last batch's first offset + 1; records come in whole
        # batches, so reading up to it brings the rest of that batch too.
        ends = await consumer.end_offsets(partitions)
        pending = {partition for partition in partitions if ends[partition] > starts[partition]}
        # Seeking right after assigning, with no await between: otherwise the reset to the
        # default position that assigning starts can land after the seek.
        consumer.assign(partitions)
        for partition in partitions:
            consumer.seek(partition, starts[partition])
        received: list[Received] = []
        async with asyncio.timeout(30):
            while pending:
                for partition, records in (
                    await consumer.getmany(*pending, timeout_ms=200)
                ).items():
                    received.extend(
                        Received(r.topic, r.partition, r.offset, r.key, r.value, dict(r.headers))
                        for r in records
                    )
                    if records[-1].offset + 1 >= ends[partition]:
                        pending.discard(partition)
        return sorted(received, key=lambda record: (record.partition, record.offset))
    finally:
        await consumer.stop()


def origin(record: Received) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def listed(run: Run, verb: str) -> dict[str, str]:
    """Event id -> dead-letter coordinates of the `would send` / `sent` lines."""
    found = re.findall(rf"^{verb} (\S+) id=(\S+) ", run.stdout, flags=re.MULTILINE)
    return {event_id: coordinates for coordinates, event_id in found}


async def test_redrive_republishes_dead_letters_that_then_succeed_under_new_keys(
    make_stack: Callable[..., Awaitable[Stack]], kafka_broker: TansuBroker
) -> None:
    # Its own sandbox, so clearing the faults touches no other test; failing events must
    # fail, not wait behind an open circuit.
    stack = await make_stack(
        "redrive",
        sandbox_flags=(),
        REGEN_PROCESSING__MAX_ATTEMPTS="2",
        REGEN_CIRCUIT__FAILURE_THRESHOLD="1000",
    )
    document, account = unique("INV"), unique("ACC")
    await stack.sandbox.fault(operation="billing", kind="status", status=503, match=document)
    await stack.sandbox.fault(operation="invoice", kind="status", status=503, match=account)
    billing = billing_event(document)
    invoice = new_event(
        "account.charges.fixed",
        {"accountId": account, "invoiceDate": "2026-11-01", "targetDate": "2026-11-30"},
    )
    invalid = new_event("journal.fixed", {"journalId": INVALID_JOURNAL_ID})
    for event, key in [(billing, document), (invoice, account), (invalid, "journal")]:
        await stack.sender.send(event, key=key, headers=[TRACEPARENT])
    failed = await stack.watcher.wait_for([billing["id"], invoice["id"], invalid["id"]])
    reasons = {event_id: result.json()["data"]["reason"] for event_id, result in failed.items()}
    assert reasons == {
        billing["id"]: "retries_exhausted",
        invoice["id"]: "retries_exhausted",
        invalid["id"]: "invalid_event",
    }
    dead_letters = await stack.watcher.wait_for_dead_letters(3, lambda record: True)
    coordinates = {record.json()["id"]: origin(record) for record in dead_letters}
    env = kafka_only(stack.service.env)
    input_before = await read_topic(kafka_broker, stack.topics.input)

    dry_run = await regen_sync("redrive", "--dry-run", env=env)

    assert dry_run.returncode == 0, dry_run.stdout + dry_run.stderr
    assert listed(dry_run, "would send") == {
        billing["id"]: coordinates[billing["id"]],
        invoice["id"]: coordinates[invoice["id"]],
    }
    assert "type=billing.document.fixed reason=retries_exhausted failed-at=" in dry_run.stdout
    assert f"scanned 3, selected 2, sent 0 (dry run: nothing sent to {stack.topics.input})" in (
        dry_run.stdout
    )
    assert "held back 1 invalid_event dead letter" in dry_run.stdout
    assert await read_topic(kafka_broker, stack.topics.input) == input_before

    await stack.sandbox.clear_faults()
    results = ResultWatcher(kafka_broker.bootstrap_servers, stack.topics)
    await results.start()
    try:
        run = await regen_sync("redrive", "--reason", "retries_exhausted", env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        assert listed(run, "sent") == listed(dry_run, "would send")
        assert f"scanned 3, selected 2, sent 2 to {stack.topics.input}" in run.stdout
        redriven = await results.wait_for([billing["id"], invoice["id"]])
    finally:
        await results.stop()

    for event_id, result in redriven.items():
        assert result.topic == stack.topics.succeeded, result.json()
        assert result.json()["data"]["sourceEventId"] == event_id
    for operation, object_id in [("billing", document), ("invoice", account)]:
        calls = await stack.sandbox.requests(operation, match=object_id)
        assert [call["status"] for call in calls] == [503, 503, 200]
        # Every answer renewed the key, and the re-drive started from a key of its own.
        assert len({call["headers"]["idempotency-key"] for call in calls}) == 3
    republished = [
        record
        for record in await read_topic(kafka_broker, stack.topics.input)
        if record not in input_before
    ]
    assert sorted(record.value or b"" for record in republished) == sorted(
        json.dumps(event).encode() for event in (billing, invoice)
    )
    for record in republished:
        event_id = record.json()["id"]
        assert record.key == (document if event_id == billing["id"] else account).encode()
        assert record.headers == {
            TRACEPARENT[0]: TRACEPARENT[1],
            REDRIVEN_FROM: coordinates[event_id].encode(),
            REDRIVE_HEADER: b"1",
        }
    assert sorted(map(origin, await read_topic(kafka_broker, stack.topics.dead_letter))) == sorted(
        coordinates.values()
    )

    invalid_run = await regen_sync("redrive", "--reason", "invalid_event", "--dry-run", env=env)
    assert invalid_run.returncode == 0, invalid_run.stdout + invalid_run.stderr
    assert listed(invalid_run, "would send") == {invalid["id"]: coordinates[invalid["id"]]}


async def test_redrive_filters_by_event_id_and_failure_time_and_takes_the_latest_dead_letter(
    make_stack: Callable[..., Awaitable[Stack]],
) -> None:
    stack = await make_stack("redrive-filters")
    first, second, third = (unique("INV") for _ in range(3))
    for document in (first, second, third):
        await stack.sandbox.fault(operation="billing", kind="status", status=400, match=document)
    a, b, c = (billing_event(document) for document in (first, second, third))
    await stack.sender.send(a, key=first)
    await stack.sender.send(b, key=second)
    early = await stack.watcher.wait_for_dead_letters(2, lambda record: True)
    # Both failed before this instant (it is read after their dead letters arrived), and
    # everything sent from here on fails after it.
    boundary = dt.datetime.now(dt.UTC).isoformat()
    await stack.sender.send(c, key=third)
    await stack.sender.send(a, key=first)  # redelivered: dead-lettered a second time
    late = [
        record
        for record in await stack.watcher.wait_for_dead_letters(4, lambda record: True)
        if record not in early
    ]
    assert {record.headers[DLQ_REASON] for record in [*early, *late]} == {b"rejected"}
    early_at = {record.json()["id"]: origin(record) for record in early}
    late_at = {record.json()["id"]: origin(record) for record in late}
    env = kafka_only(stack.service.env)

    async def dry_run(*flags: str) -> Run:
        run = await regen_sync("redrive", "--dry-run", *flags, env=env)
        assert run.returncode == 0, run.stdout + run.stderr
        return run

    by_id = await dry_run("--event-id", a["id"], "--event-id", c["id"])
    assert listed(by_id, "would send") == late_at
    assert "scanned 4, selected 2, sent 0" in by_id.stdout
    assert "skipped 1 older dead letter of an event dead-lettered again" in by_id.stdout

    since = await dry_run("--since", boundary)
    assert listed(since, "would send") == late_at
    assert "skipped" not in since.stdout

    until = await dry_run("--until", boundary)
    assert listed(until, "would send") == early_at

    both = await dry_run("--event-id", b["id"], "--since", boundary)
    assert listed(both, "would send") == {}
    assert "scanned 4, selected 0, sent 0" in both.stdout
    assert f"no dead letter selected for event id {b['id']}" in both.stdout

    oldest = await dry_run("--limit", "1")
    assert listed(oldest, "would send") == {b["id"]: early_at[b["id"]]}
    assert "left 2 more dead letters for later (--limit 1)" in oldest.stdout


async def topics_with_dead_letters(broker: TansuBroker, events: list[dict[str, Any]]) -> Topics:
    """New topics whose dead-letter topic holds ``events``, in partition 0 from offset 0,
    written at once so that they share record batches as the dead letters of events failing
    together do. The producer takes records up to 4 MiB, more than redrive's 1 MiB."""
    topics = Topics.named(unique("redrive-written"))
    await broker.create_topics(topics.all, PARTITIONS)
    headers = [
        (DLQ_REASON, b"retries_exhausted"),
        (DLQ_FAILED_AT, dt.datetime.now(dt.UTC).isoformat().encode()),
    ]
    producer = AIOKafkaProducer(
        bootstrap_servers=broker.bootstrap_servers,
        enable_idempotence=False,
        linger_ms=100,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    try:
        sent = [
            await producer.send(
                topics.dead_letter, json.dumps(event).encode(), partition=0, headers=headers
            )
            for event in events
        ]
        offsets = [record.offset for record in await asyncio.gather(*sent)]
    finally:
        await producer.stop()
    assert offsets == list(range(len(events)))
    return topics


async def test_redrive_reads_every_dead_letter_of_a_batch_written_at_once(
    kafka_broker: TansuBroker, service_env: Callable[..., dict[str, str]]
) -> None:
    # The last batch of a partition must be read whole: Tansu's end offset counts only its
    # first record.
    events = [billing_event(unique("INV")) for _ in range(3)]
    topics = await topics_with_dead_letters(kafka_broker, events)

    run = await regen_sync("redrive", "--dry-run", env=kafka_only(service_env(topics)))

    assert run.returncode == 0, run.stdout + run.stderr
    assert listed(run, "would send") == {
        event["id"]: f"{topics.dead_letter}/0/{offset}" for offset, event in enumerate(events)
    }
    assert "scanned 3, selected 3, sent 0" in run.stdout


async def test_redrive_reports_what_it_could_not_send_and_exits_1(
    kafka_broker: TansuBroker, service_env: Callable[..., dict[str, str]]
) -> None:
    small = billing_event(unique("INV"))
    # More than the 1 MiB a producer sends by default, though the broker took it.
    large = billing_event(unique("INV")) | {"padding": "x" * 1_200_000}
    topics = await topics_with_dead_letters(kafka_broker, [small, large])

    run = await regen_sync("redrive", env=kafka_only(service_env(topics)))

    assert run.returncode == 1, run.stdout + run.stderr
    assert list(listed(run, "sent")) == [small["id"]]
    assert f"not sent: {topics.dead_letter}/0/1: MessageSizeTooLargeError" in run.stderr
    assert f"scanned 2, selected 2, sent 1 to {topics.input}" in run.stdout
    [republished] = await read_topic(kafka_broker, topics.input)
    assert republished.json() == small


async def test_redrive_refuses_a_missing_target_topic_without_creating_it(
    kafka_broker: TansuBroker, service_env: Callable[..., dict[str, str]]
) -> None:
    topics = Topics.named(unique("redrive-missing"))
    await kafka_broker.create_topics([topics.dead_letter], 2)
    elsewhere = unique("redrive-elsewhere")

    run = await regen_sync("redrive", "--to", elsewhere, env=kafka_only(service_env(topics)))

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"topic {elsewhere} does not exist" in run.stderr
    assert "scanned" not in run.stdout
    assert elsewhere not in await topic_names(kafka_broker)


async def test_redrive_fails_within_the_timeout_on_an_unreachable_broker(
    shared_topics: Topics, service_env: Callable[..., dict[str, str]]
) -> None:
    env = service_env(shared_topics, REGEN_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")

    run = await regen_sync("redrive", "--timeout", "2", env=kafka_only(env))

    assert run.returncode == 1, run.stdout + run.stderr
    assert "regen-sync redrive: Kafka: " in run.stderr
    assert "Unable to bootstrap" in run.stderr
    assert run.seconds < 2 + 8, "interpreter start-up aside, bounded by the 2 s timeout"
