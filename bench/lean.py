"""The lean pipeline: the least work that makes regen-sync's upstream call and publishes its
result, as a floor for what the service's own work costs.

aiokafka consume → aiohttp POST of the call regen-sync makes for the event (same path, body,
Authorization, Idempotency-Key and Zuora-Track-Id), at most ``IN_FLIGHT`` at once → aiokafka
produce of a result event of the same shape and size as regen-sync's → commit, once per poll.
Nothing else: no validation, ordering per object, retries, coalescing, metrics or logs.

    python -m bench.lean --bootstrap-servers HOST:PORT --input T --partitions 6 --group G \
        --results T --upstream-url URL --client-id ID --client-secret S --api-token S
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import signal
import uuid
from collections.abc import Sequence
from typing import Any

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.naive import upstream_request

READY_LINE = "lean pipeline ready"
IN_FLIGHT = 20
_CONTENT_TYPE = [("content-type", b"application/cloudevents+json; charset=UTF-8")]


class Upstream:
    """The sandbox, called as regen-sync calls it."""

    def __init__(self, http: aiohttp.ClientSession, zuora_token: str, api_token: str) -> None:
        self._http = http
        self._zuora = f"Bearer {zuora_token}"
        self._softwareone = f"Bearer {api_token}"
        self._in_flight = asyncio.Semaphore(IN_FLIGHT)

    @classmethod
    async def log_in(
        cls, http: aiohttp.ClientSession, client_id: str, client_secret: str, api_token: str
    ) -> Upstream:
        form = {
            "client_id": client_id,
            "client_secret": client_secret,
            "grant_type": "client_credentials",
        }
        async with http.post("/oauth/token", data=form) as answer:
            answer.raise_for_status()
            token: str = (await answer.json())["access_token"]
        return cls(http, token, api_token)

    async def call(self, event: dict[str, Any]) -> tuple[int, Any]:
        path, body = upstream_request(event)
        if path.startswith("/public/"):
            headers = {"Authorization": self._softwareone}
        else:
            headers = {
                "Authorization": self._zuora,
                "Idempotency-Key": event["id"],
                "Zuora-Track-Id": event["id"][:64],
            }
        async with self._in_flight, self._http.post(path, json=body, headers=headers) as answer:
            return answer.status, json.loads(await answer.read())


def result(event: dict[str, Any], key: str, status: int, answer: Any) -> bytes:
    succeeded = status == 200
    data: dict[str, Any] = {
        "sourceEventId": event["id"],
        "sourceEventType": event["type"],
        "operation": upstream_request(event)[0].rsplit("/", 1)[-1],
        "objectKey": key,
        "attempts": 1,
        "servedByEventId": event["id"],
    }
    if succeeded:
        data["upstream"] = answer if isinstance(answer, dict) else {"answer": answer}
    else:
        data |= {"reason": "rejected", "retryable": False, "httpStatus": status}
    document = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "urn:bench:lean",
        "subject": key,
        "time": dt.datetime.now(dt.UTC).isoformat(),
        "datacontenttype": "application/json",
        "type": f"regeneration.{'succeeded' if succeeded else 'failed'}",
        "data": data,
    }
    return json.dumps(document, separators=(",", ":")).encode()


async def run(arguments: argparse.Namespace) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=arguments.bootstrap_servers,
        group_id=arguments.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=arguments.bootstrap_servers,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    async with aiohttp.ClientSession(
        arguments.upstream_url, connector=aiohttp.TCPConnector(limit=0)
    ) as http:
        upstream = await Upstream.log_in(
            http, arguments.client_id, arguments.client_secret, arguments.api_token
        )
        await consumer.start()
        await producer.start()
        try:
            consumer.assign(
                [TopicPartition(arguments.input, number) for number in range(arguments.partitions)]
            )
            print(READY_LINE, flush=True)
            working = asyncio.create_task(_work(consumer, producer, upstream, arguments.results))
            await stopping.wait()
            working.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await working
        finally:
            await producer.stop()
            await consumer.stop()


async def _work(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, upstream: Upstream, results: str
) -> None:
    async def handle(value: bytes, key: bytes) -> asyncio.Future[Any]:
        event = json.loads(value)
        status, answer = await upstream.call(event)
        outcome = result(event, key.decode(), status, answer)
        delivery: asyncio.Future[Any] = await producer.send(
            results, value=outcome, key=key, headers=_CONTENT_TYPE
        )
        return delivery

    while True:
        batches = await consumer.getmany(timeout_ms=1000)
        deliveries = await asyncio.gather(
            *(
                handle(record.value, record.key)
                for records in batches.values()
                for record in records
            )
        )
        await asyncio.gather(*deliveries)
        if batches:
            await consumer.commit()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--api-token", required=True)
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
