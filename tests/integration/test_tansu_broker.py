"""What regen-sync relies on from the broker, proven on the real Tansu with aiokafka.

Tansu answers a JoinGroup only after about half the consumer's session timeout (rounded up
to whole seconds): 5 s with aiokafka's default 10 s. These tests use a 3 s session timeout
to join in about 2 s; ``test_group_join_time`` measures both.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from harness import unique
from kafka_clients import (
    QUICK_GROUP,
    assert_nothing_delivered,
    drain,
    group_consumer,
    positions,
    producer,
)

from devstack import TansuBroker, TansuError

pytestmark = pytest.mark.integration


async def test_committed_offsets_survive_across_consumers(kafka_broker: TansuBroker) -> None:
    topic, group = unique("offsets"), unique("group")
    await kafka_broker.create_topics([topic], partitions=6)
    partitions = {TopicPartition(topic, p) for p in range(6)}

    sent: dict[tuple[int, int], bytes] = {}
    async with producer(kafka_broker) as client:
        for i in range(50):
            key = f"billing-account-{i % 10}".encode()
            metadata = await client.send_and_wait(topic, f"event-{i}".encode(), key=key)
            sent[metadata.partition, metadata.offset] = key
    partition_of_key = {key: partition for (partition, _), key in sent.items()}
    assert all(partition_of_key[key] == partition for (partition, _), key in sent.items())
    assert len(set(partition_of_key.values())) > 1

    per_partition = Counter(partition for partition, _ in sent)
    # Commit half of each partition: the committed offset is the next one to read.
    commit = {tp: per_partition[tp.partition] // 2 for tp in partitions}

    async with group_consumer(kafka_broker, topic, group) as first:
        assert first.assignment() == partitions
        assert positions(await drain(first, 50)) == sorted(sent)
        await first.commit(commit)
        for tp, offset in commit.items():
            assert await first.committed(tp) == offset

    expected_rest = sorted((p, o) for p, o in sent if o >= commit[TopicPartition(topic, p)])
    # This join takes about 7 s: the first member, of generation 0, did not leave the group.
    async with group_consumer(kafka_broker, topic, group) as second:
        for tp, offset in commit.items():
            assert await second.committed(tp) == offset
        assert positions(await drain(second, len(expected_rest))) == expected_rest
        await assert_nothing_delivered(second)


async def test_pause_stops_and_resume_restarts_delivery(kafka_broker: TansuBroker) -> None:
    topic = unique("pause")
    await kafka_broker.create_topics([topic], partitions=2)
    paused, running = TopicPartition(topic, 0), TopicPartition(topic, 1)

    async with (
        producer(kafka_broker) as client,
        group_consumer(kafka_broker, topic, unique("group")) as consumer,
    ):

        async def send_three_each() -> None:
            for tp in (paused, running):
                for i in range(3):
                    await client.send_and_wait(topic, f"m{i}".encode(), partition=tp.partition)

        await send_three_each()
        assert len(await drain(consumer, 6)) == 6

        await send_three_each()
        # Give the background fetcher time to buffer the new records: pausing must hold
        # back records already fetched, not just stop further fetches.
        await asyncio.sleep(1.0)
        consumer.pause(paused)
        assert consumer.paused() == {paused}
        assert positions(await drain(consumer, 3)) == [(1, 3), (1, 4), (1, 5)]
        await assert_nothing_delivered(consumer)
        assert await consumer.position(paused) == 3

        consumer.resume(paused)
        assert consumer.paused() == set()
        assert positions(await drain(consumer, 3)) == [(0, 3), (0, 4), (0, 5)]
        await assert_nothing_delivered(consumer, wait_s=0.5)


async def test_headers_round_trip(kafka_broker: TansuBroker) -> None:
    topic = unique("headers")
    await kafka_broker.create_topics([topic], partitions=1)
    headers = [
        ("ce_id", b"evt-1"),
        ("dup", b"first"),
        ("dup", b"second"),
        ("empty", b""),
        ("null", None),
        ("n\u00f6n-ascii", "\u00e9".encode()),
        ("binary", bytes(range(256))),
    ]
    async with producer(kafka_broker) as client:
        await client.send_and_wait(
            topic, b"payload", key=b"key", headers=headers, timestamp_ms=1_700_000_000_000
        )

    # Plain assign(): no group, so no join delay.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_broker.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        [record] = await drain(consumer, 1)
    finally:
        await consumer.stop()
    assert record.headers == tuple(headers)
    assert (record.key, record.value, record.timestamp) == (b"key", b"payload", 1_700_000_000_000)


async def _join_seconds(
    broker: TansuBroker, topic: str, group: str, **settings: Any
) -> tuple[float, AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=broker.bootstrap_servers, group_id=group, **settings
    )
    started = time.monotonic()
    await consumer.start()
    elapsed = time.monotonic() - started
    assert consumer.assignment() == {TopicPartition(topic, 0)}
    return elapsed, consumer


async def test_group_join_time(
    kafka_broker: TansuBroker, record_property: pytest.RecordProperty
) -> None:
    topic = unique("join")
    await kafka_broker.create_topics([topic], partitions=1)
    timings: dict[str, float] = {}

    timings["default_session_timeout"], consumer = await _join_seconds(
        kafka_broker, topic, unique("group")
    )
    await consumer.stop()
    timings["session_timeout_3s"], consumer = await _join_seconds(
        kafka_broker, topic, unique("group"), **QUICK_GROUP
    )
    await consumer.stop()

    # Tansu numbers a group's first generation 0, and aiokafka only sends LeaveGroup from
    # generation > 0, so the group's first member lingers until its session expires and
    # the next member's join waits for that; from the second generation on, leaving works.
    group = unique("group")
    for label in ("fresh_group", "after_first_member_left", "after_second_member_left"):
        timings[f"rejoin_{label}"], consumer = await _join_seconds(
            kafka_broker, topic, group, **QUICK_GROUP
        )
        await consumer.stop()

    for name, seconds in timings.items():
        record_property(f"join_s_{name}", round(seconds, 2))
    print("group join seconds:", {name: round(s, 2) for name, s in timings.items()})
    assert timings["default_session_timeout"] < 15
    assert timings["session_timeout_3s"] < timings["default_session_timeout"]


async def test_create_topics_checks_existing_partition_count(kafka_broker: TansuBroker) -> None:
    topic = unique("create")
    await kafka_broker.create_topics([topic], partitions=3)
    await kafka_broker.create_topics([topic], partitions=3)
    with pytest.raises(TansuError, match="exists with 3 partitions, wanted 6"):
        await kafka_broker.create_topics([topic], partitions=6)


async def test_metadata_request_auto_creates_topic_with_four_partitions(
    kafka_broker: TansuBroker,
) -> None:
    topic = unique("auto")
    async with producer(kafka_broker) as client:
        assert await client.partitions_for(topic) == {0, 1, 2, 3}
    with pytest.raises(TansuError, match="exists with 4 partitions"):
        await kafka_broker.create_topics([topic], partitions=6)


async def test_broker_restarts_empty_on_same_port_after_kill(
    kafka_broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log_path = tmp_path_factory.mktemp("restart") / "tansu.log"
    with TansuBroker(kafka_broker.binary, log_path=log_path) as broker:
        await broker.create_topics(["before-crash"], partitions=1)
        first_pid = broker.process.pid
        broker.kill()
        assert broker.process.returncode == -signal.SIGKILL

        broker.start()
        assert broker.process.pid != first_pid
        # Only this run's output counts: the log file also holds the killed run's lines.
        line = broker.process.wait_for_line("listening on", timeout=5)
        assert broker.bootstrap_servers in line
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        try:
            assert "before-crash" not in await admin.list_topics()
        finally:
            await admin.close()
    assert broker.process.returncode is not None
    assert broker.process.log_tail().count("ready in") == 2


def test_start_fails_clearly_when_port_is_taken(
    kafka_broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The running broker answers on the port, but with another cluster id, so the new
    # process (which cannot bind) is not mistaken for a ready broker.
    log_path = tmp_path_factory.mktemp("clash") / "tansu.log"
    broker = TansuBroker(kafka_broker.binary, port=kafka_broker.port, log_path=log_path)
    with pytest.raises(TansuError, match="during startup") as failure:
        broker.start()
    assert "Address in use" in str(failure.value)
    assert not broker.process.running
