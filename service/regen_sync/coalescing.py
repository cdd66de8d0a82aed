"""The coalescing seam: one upstream call shared by identical events waiting for one object.

The dispatcher makes a ``SharedCall`` for each event it starts; the processor passes it on to
the regenerator, which closes it as each attempt goes out; the processor then learns from it
which events the outcome serves, and reports each finished once its result is published.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

Item = TypeVar("Item")


class SharedCall(Protocol[Item]):
    """One upstream call and the events it serves: the first event, and every identical event
    queued behind it until the call goes out (``close``)."""

    @property
    def first(self) -> Item: ...

    def close(self) -> Sequence[Item]:
        """Take in the identical events queued behind the first, then no more; idempotent:
        later calls return the same events. Never closed, the call serves its first alone."""

    def finished(self, item: Item) -> None:
        """``item``'s result is published: its offset may be committed."""
