"""Kafka metadata without side effects: the cluster, and which topics exist with how many
partitions.

A metadata request naming an unknown topic creates it on brokers that auto-create topics
(Tansu always does, with 4 partitions), which would turn a failing preflight into a silently
wrong topology. These requests say ``allow_auto_topic_creation=False`` (Metadata v4+, every
broker since Kafka 1.0), so asking never creates anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import UnknownTopicOrPartitionError, for_code
from aiokafka.protocol.metadata import MetadataRequest

from regen_sync.config import KafkaSettings
from regen_sync.kafka import aiokafka_connection_options

_UNKNOWN_TOPIC: str = UnknownTopicOrPartitionError.__name__


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: str | None
    controller_id: int | None
    brokers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TopicInfo:
    name: str
    partitions: tuple[int, ...] = ()
    leaderless: int = 0
    """Partitions without a leader: nothing can be written to or read from them."""
    error: str | None = None
    """The broker's error for the topic, e.g. UnknownTopicOrPartitionError."""

    @property
    def exists(self) -> bool:
        return self.error is None

    @property
    def missing(self) -> bool:
        return self.error == _UNKNOWN_TOPIC

    @property
    def problem(self) -> str:
        """Why it cannot be used: ``does not exist`` or ``is not usable: <error>``."""
        return "does not exist" if self.missing else f"is not usable: {self.error}"


class UnusableTopics(Exception):
    """Topics a command needs that are missing or that the broker reports an error for."""

    def __init__(self, topics: Sequence[TopicInfo]) -> None:
        super().__init__("; ".join(f"topic {topic.name} {topic.problem}" for topic in topics))
        self.topics = tuple(topics)


def connection_options(settings: KafkaSettings, request_seconds: float) -> dict[str, Any]:
    """The service's connection settings, with every request bounded by ``request_seconds``."""
    return aiokafka_connection_options(settings) | {
        "request_timeout_ms": int(request_seconds * 1000)
    }


@asynccontextmanager
async def kafka_client(
    settings: KafkaSettings, request_seconds: float
) -> AsyncIterator[AIOKafkaClient]:
    """A bootstrapped low-level client: the bootstrap itself asks for no topic."""
    client = AIOKafkaClient(**connection_options(settings, request_seconds))
    try:
        await client.bootstrap()
        yield client
    finally:
        await client.close()


async def describe_cluster(client: AIOKafkaClient) -> ClusterInfo:
    metadata = await _metadata(client, [])
    return ClusterInfo(
        cluster_id=metadata.get("cluster_id"),
        controller_id=metadata.get("controller_id"),
        brokers=tuple(f"{broker['host']}:{broker['port']}" for broker in metadata["brokers"]),
    )


async def describe_topics(client: AIOKafkaClient, names: Sequence[str]) -> dict[str, TopicInfo]:
    metadata = await _metadata(client, list(dict.fromkeys(names)))
    described = {topic["topic"]: _topic_info(topic) for topic in metadata["topics"]}
    # A broker answers for every topic asked about; a missing answer means the same as
    # an unknown topic.
    return {name: described.get(name, TopicInfo(name, error=_UNKNOWN_TOPIC)) for name in names}


async def usable_topics(
    settings: KafkaSettings, names: Sequence[str], request_seconds: float
) -> dict[str, TopicInfo]:
    """The topics described, each bounded by ``request_seconds``; raises UnusableTopics naming
    every one that is missing or unusable (none is created)."""
    async with (
        asyncio.timeout(request_seconds),
        kafka_client(settings, request_seconds) as client,
    ):
        described = await describe_topics(client, names)
    if unusable := [topic for topic in described.values() if not topic.exists]:
        raise UnusableTopics(unusable)
    return described


async def _metadata(client: AIOKafkaClient, topics: list[str]) -> dict[str, Any]:
    request = MetadataRequest(topics, allow_auto_topic_creation=False)
    response = await client.send(client.get_random_node(), request)
    metadata: dict[str, Any] = response.to_object()
    return metadata


def _topic_info(topic: dict[str, Any]) -> TopicInfo:
    if topic["error_code"] != 0:
        return TopicInfo(topic["topic"], error=for_code(topic["error_code"]).__name__)
    partitions = sorted(topic["partitions"], key=lambda partition: partition["partition"])
    return TopicInfo(
        topic["topic"],
        partitions=tuple(partition["partition"] for partition in partitions),
        leaderless=sum(1 for partition in partitions if partition["leader"] < 0),
    )
