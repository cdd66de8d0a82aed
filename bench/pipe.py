"""The broker pipe limit: raw aiokafka consume → produce of the same records, no HTTP call.

Reads every partition of the input (assigned, no consumer group) and writes each record's
key and value unchanged to the output topic, waiting for each fetched batch to be
acknowledged before fetching the next, as a service that publishes before it commits would.

    python -m bench.pipe --bootstrap-servers HOST:PORT --input T --partitions 6 --output T
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

READY_LINE = "pipe ready"


async def pipe(bootstrap_servers: str, source: str, partitions: int, target: str) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers, acks="all", enable_idempotence=False
    )
    await consumer.start()
    await producer.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    try:
        consumer.assign([TopicPartition(source, number) for number in range(partitions)])
        print(READY_LINE, flush=True)
        forwarding = asyncio.create_task(_forward(consumer, producer, target))
        await stopping.wait()
        forwarding.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await forwarding
    finally:
        await producer.stop()
        await consumer.stop()


async def _forward(consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, target: str) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=1000)
        deliveries = [
            await producer.send(target, value=record.value, key=record.key)
            for records in batches.values()
            for record in records
        ]
        await asyncio.gather(*deliveries)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--output", required=True)
    arguments = parser.parse_args(argv)
    asyncio.run(
        pipe(arguments.bootstrap_servers, arguments.input, arguments.partitions, arguments.output)
    )


if __name__ == "__main__":
    main()
