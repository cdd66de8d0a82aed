"""The coalescing seam: identical events waiting together share one upstream call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

Item = TypeVar("Item")


class SharedCall(Protocol[Item]):
    """One upstream call and the events it serves: the first event, and every identical event
    queued behind it until the call goes out (``close``)."""

    @property
    def first(self) -> Item: ...

    # was seal(); idempotent: later calls return the same list
    def close(self) -> Sequence[Item]: ...

    # unchanged meaning
    def finished(self, item: Item) -> None: ...
