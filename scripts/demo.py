"""The regen-sync demo: a local broker and upstream sandbox, the service, one event of each
type plus a bad one, and what came out on the result topics. Everything is stopped at the end,
or, with ``--keep``, when you press Ctrl-C, so that the operator commands (``regen-sync send``,
``trace``, ``redrive``) can be tried against the running stack from another shell.

Run it with `bash scripts/demo.sh [--keep]` (which sets up the virtualenv first).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from devstack import ManagedProcess, TansuBroker, free_port

TOPICS = {
    "input": "billing.data-fixed",
    "succeeded": "regen-sync.succeeded",
    "failed": "regen-sync.failed",
    "dead_letter": "regen-sync.dead-letter",
}
CLIENT_ID, CLIENT_SECRET, API_TOKEN = "demo-client", "demo-client-secret", "demo-api-token"


def demo_events() -> list[tuple[str, bytes]]:
    def event(event_type: str, data: dict[str, Any]) -> bytes:
        return json.dumps(
            {
                "specversion": "1.0",
                "id": f"demo-{uuid.uuid4().hex[:8]}",
                "source": "urn:demo:billing-fixer",
                "type": event_type,
                "data": data,
            }
        ).encode()

    return [
        (
            "INV-1001",
            event(
                "billing.document.fixed", {"documentType": "Invoice", "documentNumber": "INV-1001"}
            ),
        ),
        (
            "A-S0001",
            event(
                "booking.fixed",
                {
                    "objectType": "Subscription",
                    "subscriptionName": "A-S0001",
                    "subscriptionVersion": 1,
                },
            ),
        ),
        (
            "ACC-42",
            event(
                "account.charges.fixed",
                {"accountId": "ACC-42", "invoiceDate": "2026-11-21", "targetDate": "2026-11-30"},
            ),
        ),
        ("BJO-2026-11", event("journal.fixed", {"journalId": "BJO-2026-11"})),
        # An unsafe journal id: refused before any request is made.
        ("bad", event("journal.fixed", {"journalId": "../../admin"})),
    ]


async def run_demo(bootstrap: str, service: ManagedProcess) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    partitions = [
        TopicPartition(TOPICS[name], 0) for name in ("succeeded", "failed", "dead_letter")
    ]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        events = demo_events()
        print(f"sending {len(events)} events to {TOPICS['input']}")
        for key, value in events:
            await producer.send_and_wait(TOPICS["input"], value=value, key=key.encode())
        expected = {"succeeded": 4, "failed": 1, "dead_letter": 1}
        seen: dict[str, list[Any]] = {name: [] for name in expected}
        deadline = time.monotonic() + 60
        while any(len(seen[n]) < c for n, c in expected.items()) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    name = next(n for n, t in TOPICS.items() if t == record.topic)
                    seen[name].append(record)
        for name in expected:
            print(f"\n── {TOPICS[name]} ({len(seen[name])})")
            for record in seen[name]:
                print(describe(name, record))
        complete = all(len(seen[n]) == c for n, c in expected.items())
        print("\ndemo", "succeeded" if complete else "did NOT get every expected result")
        if not complete:
            print(service.log_tail(30), file=sys.stderr)
        return 0 if complete else 1
    finally:
        await producer.stop()
        await consumer.stop()


def describe(name: str, record: Any) -> str:
    if name == "dead_letter":
        headers = {k: v.decode() for k, v in record.headers if k.startswith("regen-")}
        return f"  key={record.key.decode()} original={record.value[:60]!r}… {headers}"
    data = json.loads(record.value)["data"]
    if name == "succeeded":
        return (
            f"  {data['sourceEventType']:<24} → {data['operation']:<33} "
            f"upstream={json.dumps(data['upstream'])}"
        )
    return f"  {data['reason']}: {data['message']}"


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument(
        "--keep", action="store_true", help="keep the stack running until Ctrl-C (or SIGTERM)"
    )
    keep = options.parse_args().keep
    workdir = Path(tempfile.mkdtemp(prefix="regen-sync-demo-"))
    broker = TansuBroker(log_path=workdir / "tansu.log")
    sandbox_port, http_port = free_port(), free_port()
    sandbox = ManagedProcess(
        [
            sys.executable,
            "-m",
            "regen_sync_sandbox",
            "--port",
            str(sandbox_port),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--api-token",
            API_TOKEN,
        ],
        log_path=workdir / "sandbox.log",
    )
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    service = ManagedProcess(
        [sys.executable, "-m", "regen_sync", "run"],
        log_path=workdir / "service.log",
        env={
            "REGEN_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "REGEN_KAFKA__ENABLE_IDEMPOTENCE": "false",  # Tansu has no idempotent producer
            "REGEN_ZUORA__BASE_URL": sandbox_url,
            "REGEN_ZUORA__CLIENT_ID": CLIENT_ID,
            "REGEN_ZUORA__CLIENT_SECRET": CLIENT_SECRET,
            "REGEN_SOFTWAREONE__BASE_URL": sandbox_url,
            "REGEN_SOFTWAREONE__API_TOKEN": API_TOKEN,
            "REGEN_HTTP__HOST": "127.0.0.1",
            "REGEN_HTTP__PORT": str(http_port),
        },
    )
    print(f"logs in {workdir}")
    try:
        broker.start()
        print(f"broker (Tansu) on {broker.bootstrap_servers}")
        asyncio.run(broker.create_topics(list(TOPICS.values()), partitions=1))
        sandbox.start()
        sandbox.wait_for_line("sandbox listening on", timeout=30)
        print(f"upstream sandbox on {sandbox_url}")
        service.start()
        service.wait_for_line('"partitions assigned"', timeout=60)
        print(f"regen-sync running; metrics on http://127.0.0.1:{http_port}/metrics")
        status = asyncio.run(run_demo(broker.bootstrap_servers, service))
        results = [
            line
            for line in httpx.get(f"http://127.0.0.1:{http_port}/metrics").text.splitlines()
            if line.startswith("regen_results_total") and not line.endswith(" 0.0")
        ]
        print("\n" + "\n".join(results))
        if keep:
            wait_for_ctrl_c(broker.bootstrap_servers)
        return status
    finally:
        service.terminate()
        sandbox.terminate()
        broker.stop()
        print("stopped the service, the sandbox and the broker")


def wait_for_ctrl_c(bootstrap: str) -> None:
    print(
        "\nthe stack stays up until Ctrl-C. The operator commands need only the Kafka settings;"
        "\nin another shell, in this directory:\n"
        f"\n  export REGEN_KAFKA__BOOTSTRAP_SERVERS={bootstrap}"
        " REGEN_KAFKA__ENABLE_IDEMPOTENCE=false"
        "\n  .venv/bin/regen-sync send --type journal.fixed --journal-id BJO-1 --wait\n",
        flush=True,
    )
    # SIGTERM ends the wait like Ctrl-C, through the same clean-up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
