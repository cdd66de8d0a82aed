"""Broker faults: the Kafka broker is SIGKILLed mid-stream and comes back on the same port,
and the service is stopped (SIGTERM) while the broker is down.

The broker is a Tansu of these tests' own on S3 storage (a local moto server), so that,
like a real cluster, it comes back with its topics, records and committed offsets; the
session broker's in-memory storage would come back empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from harness import (
    ResultWatcher,
    assert_each_zuora_event_ran_once,
    distinct_objects,
    eventually,
    metric,
    unique,
)
from kafka_clients import drain, group_consumer, positions, producer
from prometheus_client.parser import text_string_to_metric_families
from stack import PARTITIONS, Stack

from devstack import LocalS3, TansuBroker

pytestmark = pytest.mark.reliability

DOWN_SECONDS = 45.0
"""Longer than the consumer's session timeout (10 s) and than the producer's request timeout
(40 s, aiokafka's default): results sent at the kill fail to publish and must be retried."""
SENT_BEFORE_KILL = 240
SENT_AFTER_RESTART = 60
SHUTDOWN_GRACE_SECONDS = 2
KUBERNETES_MARGIN_SECONDS = 15
"""The chart's terminationGracePeriodSeconds is the shutdown grace plus this: a shutdown that
takes longer is cut short by SIGKILL."""


@pytest.fixture
def durable_broker(kafka_broker: TansuBroker, logs_dir: Path) -> Iterator[TansuBroker]:
    """A Tansu of its own on S3 storage; the S3 server outlives the broker's restarts."""
    name = unique("durable")
    with (
        LocalS3(log_path=logs_dir / f"{name}-s3.log") as s3,
        TansuBroker(
            kafka_broker.binary,
            storage_engine=s3.storage_engine,
            env=s3.tansu_env(),
            log_path=logs_dir / f"{name}-tansu.log",
        ) as broker,
    ):
        yield broker


@pytest_asyncio.fixture
async def fault_stack(
    durable_broker: TansuBroker, make_stack: Callable[..., Awaitable[Stack]]
) -> Stack:
    """Topics, a slow sandbox, a result watcher and an event sender of its own on the
    durable broker; the services (``stack.service``, more from ``stack.new_service``) are
    started by each test, with its settings."""
    # Slow answers keep events in flight (called, or waiting for a call) at the kill.
    return await make_stack(
        "broker-fault",
        broker=durable_broker,
        sandbox_flags=("--concurrency-limit", "0", "--latency-ms", "400"),
        start=False,
    )


class ReadinessLog:
    """Samples ``/health/ready`` in the background and keeps every answer with its time."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.answers: list[tuple[float, int]] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Before the service stops: the sampler fails on a refused connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        # No transport errors are tolerated: the HTTP side must keep answering throughout.
        async with httpx.AsyncClient(timeout=5) as client:
            while True:
                status = (await client.get(self._url)).status_code
                self.answers.append((time.monotonic(), status))
                await asyncio.sleep(0.2)

    def between(self, start: float, end: float) -> list[int]:
        return [status for at, status in self.answers if start <= at <= end]

    def first_after(self, start: float, status: int) -> float | None:
        return next((at for at, answer in self.answers if at > start and answer == status), None)


async def committed_offsets(
    bootstrap_servers: str, group: str, partitions: list[TopicPartition]
) -> dict[int, int | None]:
    """The group's committed offsets, read without joining it (no rebalance of the service)."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group)
    await reader.start()
    try:
        return {tp.partition: await reader.committed(tp) for tp in partitions}
    finally:
        await reader.stop()


async def log_ends(bootstrap_servers: str, topic: str, records: int) -> dict[int, int]:
    """One past the last offset of each partition, found by reading all ``records`` records.

    Tansu's ListOffsets answer for the latest offset is not the log end (in memory it counts
    batches; on S3 it stays at 1), so the ends are read rather than asked for.
    """
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest")
    await reader.start()
    try:
        reader.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        read = await drain(reader, records)
    finally:
        await reader.stop()
    ends: dict[int, int] = {}
    for record in read:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)
    return ends


def with_results(watcher: ResultWatcher, events: list[tuple[dict[str, Any], str]]) -> int:
    return sum(1 for event, _ in events if watcher.results.get(event["id"]))


def duplicate_results(watcher: ResultWatcher, events: list[tuple[dict[str, Any], str]]) -> int:
    """Results beyond the first per event. A duplicate must be the same result event (a
    redelivery, or a produce the broker wrote just before dying and the client retried),
    never a second, different outcome."""
    for event, _ in events:
        distinct = {(r.topic, r.json()["id"]) for r in watcher.results[event["id"]]}
        assert len(distinct) == 1, (event["id"], distinct)
    return sum(len(watcher.results[event["id"]]) - 1 for event, _ in events)


def upstream_calls(exposition: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == "regen_upstream_requests_total"
    )


async def test_tansu_on_s3_keeps_topics_records_and_committed_offsets_across_a_sigkill(
    durable_broker: TansuBroker, figures: dict[str, object]
) -> None:
    topic, group = unique("durable"), unique("group")
    await durable_broker.create_topics([topic], partitions=4)
    partitions = {TopicPartition(topic, p) for p in range(4)}
    values = [f"record-{n}".encode() for n in range(200)]
    async with producer(durable_broker) as client:
        futures = [
            await client.send(topic, value, key=f"object-{n % 25}".encode())
            for n, value in enumerate(values)
        ]
        sent = {
            (m.partition, m.offset): value
            for m, value in zip(await asyncio.gather(*futures), values, strict=True)
        }
    per_partition = Counter(partition for partition, _ in sent)
    commit = {tp: per_partition[tp.partition] // 2 for tp in partitions}
    uncommitted = sorted((p, o) for p, o in sent if o >= commit[TopicPartition(topic, p)])
    async with group_consumer(durable_broker, topic, group) as first:
        assert positions(await drain(first, len(sent))) == sorted(sent)
        await first.commit(commit)

    durable_broker.kill()
    killed_at = time.monotonic()
    await asyncio.to_thread(durable_broker.start)
    restart_seconds = time.monotonic() - killed_at

    async with group_consumer(durable_broker, topic, group) as second:
        assert second.assignment() == partitions
        assert {tp: await second.committed(tp) for tp in partitions} == commit
        assert positions(await drain(second, len(uncommitted))) == uncommitted
    everything = AIOKafkaConsumer(
        bootstrap_servers=durable_broker.bootstrap_servers, auto_offset_reset="earliest"
    )
    await everything.start()
    try:
        everything.assign(list(partitions))
        replayed = await drain(everything, len(sent))
    finally:
        await everything.stop()
    assert {(r.partition, r.offset): r.value for r in replayed} == sent
    figures.update(
        records_produced=len(sent),
        faults_injected=1,
        records_read_back_after_restart=len(replayed),
        records_lost=len(sent.keys() - {(r.partition, r.offset) for r in replayed}),
        committed_before_kill=sum(commit.values()),
        group_resumed_with=len(uncommitted),
        broker_restart_seconds=round(restart_seconds, 2),
    )


async def test_service_rides_out_a_broker_sigkill_mid_stream_without_losing_an_event(
    durable_broker: TansuBroker, fault_stack: Stack, figures: dict[str, object]
) -> None:
    stack, watcher = fault_stack, fault_stack.watcher
    service = stack.service
    await asyncio.to_thread(service.start)
    await asyncio.to_thread(service.wait_ready)
    async with ReadinessLog(f"{service.http_url}/health/ready") as readiness:
        events = distinct_objects("BRK", SENT_BEFORE_KILL + SENT_AFTER_RESTART)
        before, after = events[:SENT_BEFORE_KILL], events[SENT_BEFORE_KILL:]

        await stack.sender.send_many(before)
        await eventually(lambda: with_results(watcher, before) >= 20, timeout=60)
        in_flight_at_kill = metric(
            await asyncio.to_thread(service.metrics), "regen_events_in_flight"
        )
        durable_broker.kill()
        killed_at = time.monotonic()
        finished_before_kill = with_results(watcher, before)

        await eventually(lambda: readiness.first_after(killed_at, 503) is not None, timeout=15)
        await asyncio.sleep(DOWN_SECONDS - (time.monotonic() - killed_at))
        assert service.process.running, service.process.log_tail()
        finished_while_down = with_results(watcher, before) - finished_before_kill
        # The broker answers before start() returns: samples from then on may rightly be 200.
        restarting_at = time.monotonic()
        await asyncio.to_thread(durable_broker.start)
        restarted_at = time.monotonic()

        await eventually(lambda: readiness.first_after(restarted_at, 200) is not None, 60)
        await stack.sender.send_many(after)
        results = await watcher.wait_for([event["id"] for event, _ in events], timeout=90)
        recovered_at = time.monotonic()

        # A probe answered just around the kill may still have reached the broker.
        statuses_while_down = readiness.between(killed_at + 1, restarting_at)
        assert statuses_while_down
        assert set(statuses_while_down) == {503}
        assert in_flight_at_kill >= 100, f"only {in_flight_at_kill} events in flight at the kill"
        assert finished_while_down == 0
        failed = [r.json()["data"] for r in results.values() if r.topic != stack.topics.succeeded]
        assert failed == []
        assert watcher.dead_letters == []
        duplicates = duplicate_results(watcher, events)
        metrics = await asyncio.to_thread(service.metrics)
        publish_retries = metric(metrics, "regen_publish_errors_total")
        assert publish_retries > 0, "no publish failed: the outage did not outlast the producer"

        ends = await log_ends(durable_broker.bootstrap_servers, stack.topics.input, len(events))
        input_partitions = [TopicPartition(stack.topics.input, p) for p in range(PARTITIONS)]

        def committed_to_the_end() -> bool:
            # ``eventually`` runs this in a worker thread, which has no event loop of its own.
            committed = asyncio.run(
                committed_offsets(
                    durable_broker.bootstrap_servers,
                    service.env["REGEN_KAFKA__GROUP_ID"],
                    input_partitions,
                )
            )
            return committed == {p: ends.get(p) for p in range(PARTITIONS)}

        # While the service still runs: its periodic commits picked up again after the outage.
        await eventually(committed_to_the_end, timeout=30)
        assert service.process.running, service.process.log_tail()

        # Read before the outage and, unless committed, once more after it: a second read
        # only gets the stored answer back.
        calls_per_key = assert_each_zuora_event_ran_once(
            await stack.sandbox.requests(), [event for event, _ in events], max_calls_per_key=2
        )
        await readiness.stop()
        # A clean SIGTERM after the outage: nothing was left stuck.
        assert await asyncio.to_thread(service.process.terminate) == 0

    not_ready_at = readiness.first_after(killed_at, 503)
    ready_again_at = readiness.first_after(restarted_at, 200)
    assert not_ready_at is not None
    assert ready_again_at is not None
    figures.update(
        events_sent=len(events),
        events_in_flight_at_kill=int(in_flight_at_kill),
        results_before_kill=finished_before_kill,
        faults_injected=1,
        broker_down_seconds=round(restarted_at - killed_at, 1),
        events_lost=len(events) - len(results),
        failed_events_for_healthy_input=len(failed),
        dead_letters=len(watcher.dead_letters),
        duplicate_results=duplicates,
        publish_retries=int(publish_retries),
        offset_commits_failed=int(metric(metrics, "regen_offset_commits_total", outcome="failure")),
        max_upstream_calls_per_idempotency_key=max(calls_per_key.values()),
        not_ready_after_kill_seconds=round(not_ready_at - killed_at, 1),
        ready_again_after_restart_seconds=round(ready_again_at - restarted_at, 1),
        time_to_recover_seconds=round(recovered_at - restarted_at, 1),
    )


async def test_sigterm_while_the_broker_is_down_exits_and_a_restart_finishes_every_event(
    durable_broker: TansuBroker, fault_stack: Stack, figures: dict[str, object]
) -> None:
    stack, watcher = fault_stack, fault_stack.watcher
    first = stack.new_service(
        REGEN_PROCESSING__SHUTDOWN_GRACE_SECONDS=str(SHUTDOWN_GRACE_SECONDS),
        # Few calls at a time, so that calls are still going out well after the kill however
        # slowly the watcher sees the first results (all 120 at full budget take about 2 s).
        REGEN_ZUORA__MAX_CONCURRENCY="4",
        REGEN_SOFTWAREONE__MAX_CONCURRENCY="2",
    )
    await asyncio.to_thread(first.start)
    events = distinct_objects("BRK", 120)
    await stack.sender.send_many(events)
    await eventually(lambda: with_results(watcher, events) >= 10, timeout=60)
    durable_broker.kill()
    calls_at_kill = upstream_calls(await asyncio.to_thread(first.metrics))
    finished_before_kill = with_results(watcher, events)
    # Upstream calls answered after the kill leave results that cannot be published.
    await eventually(lambda: upstream_calls(first.metrics()) >= calls_at_kill + 20, timeout=30)
    in_flight_at_sigterm = metric(await asyncio.to_thread(first.metrics), "regen_events_in_flight")

    sigterm_at = time.monotonic()
    exit_code = await asyncio.to_thread(first.process.terminate, 60)
    shutdown_seconds = time.monotonic() - sigterm_at
    assert exit_code == 0, first.process.log_tail()
    # aiokafka's clients would wait 40 s for the absent broker; the service ends itself first.
    assert shutdown_seconds < SHUTDOWN_GRACE_SECONDS + KUBERNETES_MARGIN_SECONDS
    stopped = await asyncio.to_thread(first.process.wait_for_line, '"stopped consuming"', 0)
    assert '"all_in_flight_finished": false' in stopped

    await asyncio.to_thread(durable_broker.start)
    restarted_at = time.monotonic()
    second = stack.new_service()
    await asyncio.to_thread(second.start)
    results = await watcher.wait_for([event["id"] for event, _ in events], timeout=90)
    recovered_at = time.monotonic()

    failed = [r.json()["data"] for r in results.values() if r.topic != stack.topics.succeeded]
    assert failed == []
    assert watcher.dead_letters == []
    # Duplicates expected: results published before the kill for offsets above their
    # partition's lowest unfinished one were not committed, so those events are read again.
    duplicates = duplicate_results(watcher, events)
    # Read by the first service and once more by the second: the second gets the answers
    # Zuora stored for the calls the first made.
    calls_per_key = assert_each_zuora_event_ran_once(
        await stack.sandbox.requests(), [event for event, _ in events], max_calls_per_key=2
    )
    figures.update(
        events_sent=len(events),
        results_before_kill=finished_before_kill,
        events_in_flight_at_sigterm=int(in_flight_at_sigterm),
        faults_injected=2,
        shutdown_grace_seconds=SHUTDOWN_GRACE_SECONDS,
        shutdown_seconds_with_broker_down=round(shutdown_seconds, 1),
        events_lost=len(events) - len(results),
        failed_events_for_healthy_input=len(failed),
        duplicate_results=duplicates,
        max_upstream_calls_per_idempotency_key=max(calls_per_key.values()),
        time_to_recover_seconds=round(recovered_at - restarted_at, 1),
    )
