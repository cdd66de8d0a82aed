"""In-memory stand-ins shared by the tests (imported as ``from fakes import ...``)."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition


class FakeGroupConsumer:
    """The parts of aiokafka's consumer that the intake and the committer use, as a member of
    a consumer group, with the state a test sets."""

    def __init__(self, partitions: int = 6) -> None:
        self.assigned: set[TopicPartition] = set()
        self.high_watermarks: dict[TopicPartition, int] = {}
        self.end: dict[TopicPartition, int] = {}
        self.group_committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_answered = asyncio.Event()
        self.paused: set[TopicPartition] = set()
        self.partitions = partitions
        self.hang_commits = False
        self.highwater_raises = False

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self.assigned)

    def highwater(self, tp: TopicPartition) -> int | None:
        if self.highwater_raises:
            # What aiokafka raised when the assignment changed under the lag report.
            raise AssertionError("Partition is not assigned")
        return self.high_watermarks.get(tp)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end.get(tp, 0) for tp in tps}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group_committed.get(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.hang_commits:
            await asyncio.Event().wait()
        self.commits.append(offsets)
        self.group_committed |= offsets
        self.commit_answered.set()

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)
