"""One measurement: start a system on fresh topics, send it events, watch its results.

Throughput is the number of events with a result divided by the time from the first publish
(or, for a preloaded backlog, from the moment the system was consuming) to the last result
observed. Latency is an event's ``time`` (stamped as it is sent) to the moment its first
result is read back from the result topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.events import BenchEvent
from bench.profile import Profiler
from bench.stack import Stack, cpu_seconds, peak_rss_mb, rss_mb
from bench.systems import ResultId, SystemUnderTest

# Tansu answers a fetch with no data only when its wait runs out, not when data arrives; a
# short wait keeps the harness's own read of the results from adding to their latency.
_RESULT_FETCH_WAIT_MS = 10
_RSS_SAMPLE_SECONDS = 1.0


@dataclass(frozen=True)
class Load:
    events: list[BenchEvent]
    rate: float | None = None
    """Events per second, sent on schedule whatever the system does (open loop); None sends
    them all as fast as the producer can (a burst)."""
    preload: bool = False
    """Send everything before the system starts: a backlog waiting in the topic."""
    warm_up_events: int = 0
    """The first events, sent like the others but left out of the latency figures: a fresh
    process's first second (new upstream connections, a token, first-use initialisation) is
    not the steady state they describe."""


@dataclass(frozen=True)
class Limits:
    time_box_seconds: float | None = None
    """Stop this long after the system is ready (and events start being sent), done or not."""
    stall_seconds: float = 60.0
    """Give up when no new result arrives for this long."""


@dataclass
class Measurement:
    """What one run of one system saw; the raw figures the report is computed from."""

    events: int
    results: int
    failed: int
    duplicates: int
    elapsed_seconds: float | None
    latencies_ms: list[float] = field(repr=False)
    peak_rss_mb: float
    rss_samples_mb: list[float]
    cpu_seconds: dict[str, float]
    """CPU time used while the system worked: by the system (after its start-up), the
    sandbox, the broker and the harness itself (sending and reading)."""
    upstream_calls: int | None
    time_boxed: bool
    log_path: str

    @property
    def events_per_second(self) -> float | None:
        if not self.results or not self.elapsed_seconds:
            return None
        return self.results / self.elapsed_seconds

    @property
    def cpu_ms_per_event(self) -> float | None:
        """The system's own CPU time per event it finished."""
        return 1000 * self.cpu_seconds["system"] / self.results if self.results else None

    def percentile_ms(self, fraction: float) -> float | None:
        """Nearest-rank percentile of the end-to-end latencies."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class ResultReader:
    """Reads the result topics from their start (they are fresh) and keeps, per input event,
    when its first result was seen."""

    def __init__(self, stack: Stack, system: SystemUnderTest) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=_RESULT_FETCH_WAIT_MS,
        )
        self._partitions = [
            TopicPartition(topic, number)
            for topic in system.result_topics
            for number in range(stack.partitions)
        ]
        self._result_id: ResultId = system.result_id
        self.first_seen: dict[str, float] = {}
        self.failed = 0
        self.duplicates = 0
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._partitions)
        await self._consumer.seek_to_beginning(*self._partitions)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            seen_at = time.time()
            for records in batches.values():
                for record in records:
                    document = json.loads(record.value)
                    event_id = self._result_id(document)
                    if event_id in self.first_seen:
                        self.duplicates += 1
                        continue
                    self.first_seen[event_id] = seen_at
                    if document.get("type") == "regeneration.failed":
                        self.failed += 1
            if batches:
                self.changed.set()


async def measure(
    stack: Stack,
    system: SystemUnderTest,
    load: Load,
    limits: Limits | None = None,
    *,
    profile: Path | None = None,
) -> Measurement:
    """``profile``: record the system's stacks with py-spy into this file while it works."""
    limits = limits or Limits()
    await stack.create_topics(system.topics)
    reader = ResultReader(stack, system)
    producer = AIOKafkaProducer(
        bootstrap_servers=stack.bootstrap_servers, acks="all", enable_idempotence=False
    )
    await producer.start()
    await reader.start()
    sent: dict[str, float] = {}
    rss_samples: list[float] = []
    sampling: asyncio.Task[None] | None = None
    sending: asyncio.Task[None] | None = None
    profiler: Profiler | None = None
    try:
        calls_before = await stack.upstream_calls() if system.calls_upstream else None
        if load.preload:
            await _send(producer, system.input_topic, load, sent)
        system.process.start()
        await asyncio.to_thread(system.process.wait_for_line, system.ready_line, 90)
        cpu_before = _cpu(stack, system)
        sampling = asyncio.create_task(_sample_rss(system.process.pid, rss_samples))
        if profile is not None:
            profiler = Profiler(system.process.pid, profile)
            profiler.start()
        consuming_since = time.time()
        if not load.preload:
            sending = asyncio.create_task(_send(producer, system.input_topic, load, sent))
        time_boxed = await _await_results(reader, len(load.events), consuming_since, limits)
        # Results the system still publishes while it shuts down are not the time box's.
        cutoff = time.time()
        peak = peak_rss_mb(system.process.pid)
        cpu_after = _cpu(stack, system)
        if sending is not None and sending.done():
            sending.result()  # a producer failure ends the run here
    finally:
        if profiler is not None:
            await asyncio.to_thread(profiler.stop)
        for task in (sampling, sending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.to_thread(system.process.terminate)
        await reader.stop()
        await producer.stop()
    calls_after = await stack.upstream_calls() if system.calls_upstream else None
    await stack.forget_requests()
    seen = {
        event_id: at
        for event_id, at in reader.first_seen.items()
        if event_id in sent and at <= cutoff
    }
    warm_up = {event.event_id for event in load.events[: load.warm_up_events]}
    last = max(seen.values(), default=None)
    started = consuming_since if load.preload else min(sent.values(), default=consuming_since)
    return Measurement(
        events=len(load.events),
        results=len(seen),
        failed=reader.failed,
        duplicates=reader.duplicates,
        elapsed_seconds=last - started if last is not None else None,
        latencies_ms=[
            (at - sent[event_id]) * 1000 for event_id, at in seen.items() if event_id not in warm_up
        ],
        peak_rss_mb=peak,
        rss_samples_mb=rss_samples,
        cpu_seconds={name: round(cpu_after[name] - cpu_before[name], 2) for name in cpu_after},
        upstream_calls=(
            calls_after - calls_before
            if calls_after is not None and calls_before is not None
            else None
        ),
        time_boxed=time_boxed,
        log_path=str(system.process.log_path),
    )


def _cpu(stack: Stack, system: SystemUnderTest) -> dict[str, float]:
    return {
        "system": cpu_seconds(system.process.pid),
        **stack.cpu_seconds(),
        "harness": time.process_time(),
    }


async def _send(producer: AIOKafkaProducer, topic: str, load: Load, sent: dict[str, float]) -> None:
    deliveries = []
    started = time.monotonic()
    for index, event in enumerate(load.events):
        if load.rate is not None:
            delay = started + index / load.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        now = time.time()
        sent[event.event_id] = now
        deliveries.append(await producer.send(topic, value=event.stamped(now), key=event.key))
    await asyncio.gather(*deliveries)


async def _await_results(
    reader: ResultReader, expected: int, started: float, limits: Limits
) -> bool:
    """Wait until every event has a result; True when the time box ended the wait first."""
    while len(reader.first_seen) < expected:
        timeout = limits.stall_seconds
        if limits.time_box_seconds is not None:
            remaining = started + limits.time_box_seconds - time.time()
            if remaining <= 0:
                return True
            timeout = min(timeout, remaining)
        reader.changed.clear()
        try:
            await asyncio.wait_for(reader.changed.wait(), timeout)
        except TimeoutError:
            if limits.time_box_seconds is None or time.time() < started + limits.time_box_seconds:
                return False  # stalled: the report shows the missing results
    return False


async def _sample_rss(pid: int, samples: list[float]) -> None:
    while True:
        with contextlib.suppress(OSError, LookupError):
            samples.append(round(rss_mb(pid), 1))
        await asyncio.sleep(_RSS_SAMPLE_SECONDS)
