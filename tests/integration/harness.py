"""Test-side tools for the real stack: send events, await their results, drive the sandbox,
run `regen-sync` commands."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from devstack import TansuBroker
from regen_sync.config import ProcessingSettings
from regen_sync.operator.reading import TansuEndOffsets


@dataclass(frozen=True)
class Topics:
    input: str
    succeeded: str
    failed: str
    dead_letter: str

    @classmethod
    def named(cls, prefix: str) -> Topics:
        return cls(f"{prefix}.input", f"{prefix}.succeeded", f"{prefix}.failed", f"{prefix}.dlq")

    def env(self) -> dict[str, str]:
        return {
            "REGEN_TOPICS__INPUT": self.input,
            "REGEN_TOPICS__SUCCEEDED": self.succeeded,
            "REGEN_TOPICS__FAILED": self.failed,
            "REGEN_TOPICS__DEAD_LETTER": self.dead_letter,
        }

    @property
    def all(self) -> list[str]:
        return [self.input, self.succeeded, self.failed, self.dead_letter]


@dataclass
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


def new_event(event_type: str, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": extra.pop("id", f"evt-{uuid.uuid4()}"),
        "source": "urn:test:billing-fixer",
        "type": event_type,
        "time": "2026-11-21T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    } | extra


def billing_event(document_id: str) -> dict[str, Any]:
    """A billing.document.fixed event for the invoice ``document_id``."""
    return new_event(
        "billing.document.fixed", {"documentType": "Invoice", "documentId": document_id}
    )


ZUORA_KINDS = 3
"""event_of_kind(n) for n % 4 < 3 is a Zuora event; 3 is a SoftwareOne journal."""


def event_of_kind(n: int, object_id: str) -> dict[str, Any]:
    """The four event types in turn (n % 4), for the object ``object_id``."""
    match n % 4:
        case 0:
            return new_event(
                "billing.document.fixed", {"documentType": "Invoice", "documentNumber": object_id}
            )
        case 1:
            return new_event(
                "booking.fixed", {"objectType": "OrderLineItem", "orderLineItemId": object_id}
            )
        case 2:
            return new_event(
                "account.charges.fixed",
                {"accountId": object_id, "invoiceDate": "2026-11-01", "targetDate": "2026-11-01"},
            )
        case _:
            return new_event("journal.fixed", {"journalId": object_id})


def distinct_objects(prefix: str, count: int) -> list[tuple[dict[str, Any], str]]:
    """``count`` events of the four types in turn, each for an object of its own (no
    coalescing, an Idempotency-Key of its own), keyed by object so they spread over the
    partitions."""
    run = unique(prefix)
    return [(event_of_kind(n, f"{run}-{n}"), f"{run}-{n}") for n in range(count)]


def nested(depth: int) -> object:
    """A JSON value nested ``depth`` objects deep."""
    value: object = "bottom"
    for _ in range(depth):
        value = {"a": value}
    return value


async def eventually(condition: Callable[[], bool], timeout: float = 15) -> None:
    """For state that has no event to await (a metric, a file): poll until it holds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await asyncio.to_thread(condition):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition still false after {timeout}s")
        await asyncio.sleep(0.1)


def metric(exposition: str, name: str, **labels: str) -> float:
    """One sample of a Prometheus text exposition, by name and exact labels."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    raise AssertionError(f"{name}{labels} is not exported")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass
class ResultWatcher:
    """Reads the output topics without a consumer group (no 5 s join) from their current end,
    and lets tests await the results of their own events."""

    bootstrap_servers: str
    topics: Topics
    results: dict[str, list[Received]] = field(default_factory=lambda: defaultdict(list))
    results_by_key: dict[bytes | None, list[Received]] = field(
        default_factory=lambda: defaultdict(list)
    )
    dead_letters: list[Received] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        partitions = []
        for topic in (self.topics.succeeded, self.topics.failed, self.topics.dead_letter):
            for number in consumer.partitions_for_topic(topic) or await _partitions(
                consumer, topic
            ):
                partitions.append(TopicPartition(topic, number))
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        # Resolve the end positions now, before events are sent. On Tansu the listed end can
        # lie inside the last record batch (results are batched), so the rest of that batch,
        # published before this start, is read and dropped first.
        ends = TansuEndOffsets(
            {partition: await consumer.position(partition) for partition in partitions}
        )
        await ends.confirm(consumer, seconds=10)
        self._consumer = consumer
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer:
            await self._consumer.stop()

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            if not batches:
                continue
            async with self._changed:
                for records in batches.values():
                    for record in records:
                        received = Received(
                            record.topic,
                            record.partition,
                            record.offset,
                            record.key,
                            record.value,
                            dict(record.headers),
                        )
                        if record.topic == self.topics.dead_letter:
                            self.dead_letters.append(received)
                        else:
                            source_id = received.json()["data"].get("sourceEventId")
                            self.results[source_id or f"@{_origin(received)}"].append(received)
                            self.results_by_key[received.key].append(received)
                self._changed.notify_all()

    async def wait_for(self, event_ids: Iterable[str], timeout: float = 60) -> dict[str, Received]:
        """The first result of each event; fails listing the ids still without one."""
        wanted = list(event_ids)

        def ready() -> bool:
            return all(self.results.get(event_id) for event_id in wanted)

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(ready)
        except TimeoutError:
            missing = [event_id for event_id in wanted if not self.results.get(event_id)]
            raise AssertionError(f"no result within {timeout}s for {missing[:10]}") from None
        return {event_id: self.results[event_id][0] for event_id in wanted}

    async def wait_for_keys(
        self, keys: Iterable[bytes], timeout: float = 60
    ) -> dict[bytes, Received]:
        wanted = list(keys)
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(
                    lambda: all(self.results_by_key.get(key) for key in wanted)
                )
        except TimeoutError:
            missing = [key for key in wanted if not self.results_by_key.get(key)]
            raise AssertionError(f"no result within {timeout}s for keys {missing[:10]}") from None
        return {key: self.results_by_key[key][0] for key in wanted}

    async def wait_for_dead_letters(
        self, count: int, predicate: Any, timeout: float = 60
    ) -> list[Received]:
        def matching() -> list[Received]:
            return [record for record in self.dead_letters if predicate(record)]

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(matching()) >= count)
        except TimeoutError:
            raise AssertionError(f"fewer than {count} dead letters within {timeout}s") from None
        return matching()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    partitions = consumer.partitions_for_topic(topic)
    assert partitions, f"topic {topic} does not exist"
    return set(partitions)


def _origin(received: Received) -> str:
    return f"{received.topic}/{received.partition}/{received.offset}"


class EventSender:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            enable_idempotence=False,
            acks="all",
            # Room for inputs above the service's 1 MiB event limit, to test that limit.
            max_request_size=4 * 1024 * 1024,
        )
        self._topic = topic

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(
        self,
        event: dict[str, Any] | bytes,
        *,
        key: str | None = None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        value = event if isinstance(event, bytes) else json.dumps(event).encode()
        await self._producer.send_and_wait(
            self._topic,
            value=value,
            key=key.encode() if key else None,
            partition=partition,
            headers=headers or [],
        )

    async def send_many(
        self, events: Iterable[tuple[dict[str, Any], str]], partition: int | None = None
    ) -> None:
        futures = [
            await self._producer.send(
                self._topic, value=json.dumps(event).encode(), key=key.encode(), partition=partition
            )
            for event, key in events
        ]
        await asyncio.gather(*futures)


class Sandbox:
    """The control API of `regen-sync-sandbox`."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10)

    async def close(self) -> None:
        await self._http.aclose()

    async def fault(self, **rule: Any) -> None:
        response = await self._http.post("/_sandbox/faults", json=rule)
        response.raise_for_status()

    async def clear_faults(self) -> None:
        (await self._http.delete("/_sandbox/faults")).raise_for_status()

    async def wait_for_requests(
        self, operation: str, match: str, count: int = 1, timeout: float = 30
    ) -> list[dict[str, Any]]:
        """The sandbox has nothing to push: its log is polled until ``count`` requests are in."""
        async with asyncio.timeout(timeout):
            while len(logged := await self.requests(operation, match)) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return logged

    async def stats(self) -> dict[str, Any]:
        response = await self._http.get("/_sandbox/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def revoke_tokens(self) -> None:
        (await self._http.post("/_sandbox/revoke-tokens")).raise_for_status()

    async def requests(
        self, operation: str | None = None, match: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"operation": operation} if operation else {}
        response = await self._http.get("/_sandbox/requests", params=params)
        response.raise_for_status()
        logged: list[dict[str, Any]] = response.json()
        if match is not None:
            logged = [r for r in logged if match in r["path"] or match in json.dumps(r["body"])]
        return logged


ZUORA_OPERATIONS = ("billing", "booking", "invoice")
"""The sandbox's operations that are Zuora calls, each with an Idempotency-Key."""

MAX_ATTEMPTS = ProcessingSettings().max_attempts
"""Upstream attempts per event read, as the stacks run (the service's default)."""

TURNED_AWAY_STATUSES = frozenset({401, 409, 429, 502, 503})
"""Answers the sandbox gives a Zuora request before running it; nothing is stored under the
request's Idempotency-Key, so a later request with that key may run. Anything else was run
(or is running) and stored: the sandbox only replays it."""


def assert_each_zuora_event_ran_once(
    logged: list[dict[str, Any]], events: Iterable[dict[str, Any]], max_calls_per_key: int
) -> Counter[str]:
    """For a sandbox that logged ``events`` (all of them succeeded) and nothing else: each
    Zuora event's work ran exactly once, under one Idempotency-Key, whatever was repeated
    around it (replays, requests turned away), and no key was sent more than
    ``max_calls_per_key`` times. Returns the calls per key."""
    zuora_events = sum(1 for event in events if event["type"] != "journal.fixed")
    zuora = [r for r in logged if r["operation"] in ZUORA_OPERATIONS]
    calls = Counter(r["headers"]["idempotency-key"] for r in zuora)
    ran = Counter(
        r["headers"]["idempotency-key"]
        for r in zuora
        if not r["replayed"] and r["status"] not in TURNED_AWAY_STATUSES
    )
    ran_twice = [key for key, runs in ran.items() if runs > 1]
    assert ran_twice == [], f"{len(ran_twice)} Idempotency-Keys ran again instead of replaying"
    assert len(ran) == zuora_events, f"{len(ran)} keys ran for {zuora_events} Zuora events"
    overused = {key: count for key, count in calls.items() if count > max_calls_per_key}
    assert overused == {}, f"keys sent more than {max_calls_per_key} times: {overused}"
    return calls


@dataclass
class Run:
    """A finished `regen-sync` command run by ``regen_sync``."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def lines(self) -> dict[str, str]:
        """Check lines by check name: `OK   topic input: …` -> {"topic input": "OK   …"}."""
        return {line[5:].split(":", 1)[0]: line for line in self.stdout.splitlines()}


async def regen_sync(*arguments: str, env: dict[str, str], timeout: float = 60) -> Run:
    """`regen-sync <arguments>` as a process with the settings ``env``; waits for it to exit."""
    # Only the variables given: settings must not leak in from the developer's shell.
    base = {name: value for name, value in os.environ.items() if not name.startswith("REGEN_")}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "regen_sync",
        *arguments,
        env=base | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode(), time.monotonic() - started)


def kafka_only(env: dict[str, str]) -> dict[str, str]:
    """What `send` and `redrive` need: no upstream section at all."""
    return {
        name: value
        for name, value in env.items()
        if name.startswith(("REGEN_KAFKA__", "REGEN_TOPICS__", "REGEN_SECRETS_DIR"))
    }


async def topic_names(broker: TansuBroker) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        names: list[str] = await admin.list_topics()
        return names
    finally:
        await admin.close()
