"""Which offset of each partition is safe to commit while events finish out of order.

Events of one partition run concurrently (different objects), so they finish in any order.
The committed position of a partition is its lowest unfinished offset: everything below it
has its result published. A crash then replays at most the unfinished tail, never skips.

``Offsets`` is the one record of this: the intake admits records into it and hands
partitions over, the dispatcher reports finished events to it, the committer reads positions
from it and records what it committed. Nothing else keeps offset state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


class Partition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Ticket:
    """Proof that an offset was started under a given assignment of its partition."""

    partition: Partition
    offset: int
    generation: int


@dataclass(slots=True)
class _Progress:
    generation: int
    unfinished: set[int] = field(default_factory=set)
    next_offset: int | None = None
    """One past the highest offset read."""
    committed: int | None = None


class Offsets:
    def __init__(self) -> None:
        self._partitions: dict[Partition, _Progress] = {}
        self._generations = 0
        self._owned: frozenset[Partition] = frozenset()
        self._assignment = 0
        """Counts revocations: records read under an earlier assignment are not admitted."""

    @property
    def owned(self) -> frozenset[Partition]:
        return self._owned

    @property
    def assignment(self) -> int:
        """The current assignment; records read now are admitted only while it lasts."""
        return self._assignment

    def assigned(self, partitions: set[Partition]) -> None:
        self._owned = frozenset(partitions)

    def revoked(self, partitions: set[Partition]) -> None:
        """Nothing read before now is admitted any more; the partitions' progress stays until
        ``forget``, so that what finished of them can still be committed."""
        self._assignment += 1
        self._owned -= partitions

    def still_ours(self, partition: Partition, assignment: int) -> bool:
        return self._assignment == assignment and partition in self._owned

    def admit(self, partition: Partition, offset: int, assignment: int) -> Ticket | None:
        """Start the offset, if its partition is still ours under the assignment it was read
        in; None if it is not (the record belongs to the partition's next owner)."""
        if not self.still_ours(partition, assignment):
            return None
        progress = self._partitions.get(partition)
        if progress is None:
            self._generations += 1
            progress = self._partitions[partition] = _Progress(self._generations)
        progress.unfinished.add(offset)
        if progress.next_offset is None or offset >= progress.next_offset:
            progress.next_offset = offset + 1
        return Ticket(partition, offset, progress.generation)

    def finished(self, ticket: Ticket) -> None:
        progress = self._partitions.get(ticket.partition)
        # A ticket from before a revocation belongs to an assignment that is gone: its
        # partition's offsets are another consumer's business now.
        if progress is not None and progress.generation == ticket.generation:
            progress.unfinished.discard(ticket.offset)

    def commit_positions(self, only: set[Partition] | None = None) -> dict[Partition, int]:
        """Positions that moved since the last commit (the offset of the next record to read)."""
        positions = {}
        for partition, progress in self._partitions.items():
            if only is not None and partition not in only:
                continue
            position = min(progress.unfinished) if progress.unfinished else progress.next_offset
            if position is not None and position != progress.committed:
                positions[partition] = position
        return positions

    def committed(self, positions: dict[Partition, int]) -> None:
        for partition, position in positions.items():
            progress = self._partitions.get(partition)
            if progress is not None:
                progress.committed = position

    def committed_position(self, partition: Partition) -> int | None:
        """The position this consumer last committed for the partition, if any yet."""
        progress = self._partitions.get(partition)
        return progress.committed if progress is not None else None

    def forget(self, partitions: set[Partition]) -> None:
        for partition in partitions:
            self._partitions.pop(partition, None)
