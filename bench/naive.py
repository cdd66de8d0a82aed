"""The naive baseline: what a team writes first with FastStream.

Each subscriber takes one record at a time: parse the JSON, await one HTTP POST to the
upstream, await the publication of a result, then take the next record. ``--consumers``
subscribers share the input's partitions (assigned round-robin), each in its own consume
loop, so with one consumer per partition every partition is served one event at a time and
the partitions run in parallel, as if one replica of this service ran per partition.

    python -m bench.naive --bootstrap-servers HOST:PORT --input T --partitions 6 \
        --consumers 6 --results T --upstream-url URL --client-id ID --client-secret S \
        --api-token S
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
from faststream import FastStream
from faststream.kafka import KafkaBroker, TopicPartition
from faststream.kafka.annotations import KafkaMessage

READY_LINE = "naive consumer ready"


def upstream_request(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path and JSON body of the one call an event needs."""
    data = event["data"]
    match event["type"]:
        case "billing.document.fixed":
            return "/v1/uno-regenerate/billing-transaction", {
                "type": data["documentType"],
                "number": data["documentNumber"],
            }
        case "booking.fixed":
            return "/v1/uno-regenerate/booking-transaction", {
                "type": data["objectType"],
                "subscriptionName": data["subscriptionName"],
                "subscriptionVersion": data["subscriptionVersion"],
            }
        case "account.charges.fixed":
            item = {
                "AccountId": data["accountId"],
                "InvoiceDate": data["invoiceDate"],
                "TargetDate": data["targetDate"],
            }
            return "/v1/action/generate", {"type": "Invoice", "objects": [item]}
        case _:
            return f"/public/v1/billing/journals/{data['journalId']}/regenerate", {}


def partition_groups(partitions: int, consumers: int) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in range(min(consumers, partitions))]
    for number in range(partitions):
        groups[number % len(groups)].append(number)
    return groups


def create_app(arguments: argparse.Namespace) -> FastStream:
    broker = KafkaBroker(arguments.bootstrap_servers, enable_idempotence=False, acks="all")
    http = httpx.AsyncClient(base_url=arguments.upstream_url, timeout=30)
    authorization: dict[str, str] = {}

    async def handle(message: KafkaMessage) -> None:
        record = message.raw_message
        assert not isinstance(record, tuple), "not a batch subscriber"
        event = json.loads(record.value)
        path, body = upstream_request(event)
        header = "journal" if path.startswith("/public/") else "zuora"
        response = await http.post(
            path, json=body, headers={"Authorization": authorization[header]}
        )
        outcome = "succeeded" if response.status_code == 200 else "failed"
        result = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "urn:bench:naive",
            "type": f"regeneration.{outcome}",
            "data": {"sourceEventId": event["id"], "httpStatus": response.status_code},
        }
        await broker.publish(json.dumps(result).encode(), arguments.results, key=record.key)

    for group in partition_groups(arguments.partitions, arguments.consumers):
        subscriber = broker.subscriber(
            partitions=[TopicPartition(arguments.input, number) for number in group],
            auto_offset_reset="earliest",
        )
        subscriber(handle)

    async def log_in() -> None:
        token = await http.post(
            "/oauth/token",
            data={
                "client_id": arguments.client_id,
                "client_secret": arguments.client_secret,
                "grant_type": "client_credentials",
            },
        )
        token.raise_for_status()
        authorization["zuora"] = f"Bearer {token.json()['access_token']}"
        authorization["journal"] = f"Bearer {arguments.api_token}"

    async def announce() -> None:
        print(READY_LINE, flush=True)

    async def close() -> None:
        await http.aclose()

    return FastStream(broker, on_startup=[log_in], after_startup=[announce], on_shutdown=[close])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--consumers", type=int, required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--upstream-url", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    parser.add_argument("--api-token", required=True)
    asyncio.run(create_app(parser.parse_args(argv)).run())


if __name__ == "__main__":
    main()
