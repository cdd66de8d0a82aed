"""This replica's share of the consumer group's upstream budget.

Operators configure one budget for the deployment ("you may use 30 of the tenant's 40
concurrent calls"), however many replicas the autoscaler runs. The consumer group's partition
assignment is the only coordinator needed: a replica that owns ``a`` of the input topic's
``n`` partitions uses ``budget * a // n`` of every budget, rounded down so that the replicas'
shares never add up to more than the budget, and at least 1 while it owns any partition so
that no partition stalls (the chart refuses budgets smaller than its replica count).
"""

from __future__ import annotations

from collections.abc import Callable

ShareListener = Callable[["GroupShare"], None]


class GroupShare:
    """The input partitions this replica owns, out of all of them; listeners hear each change.

    Until the first assignment it owns nothing, so no budget is used before there is work."""

    def __init__(self, assigned: int = 0, total: int = 1) -> None:
        self._assigned = assigned
        self._total = total
        self._listeners: list[ShareListener] = []

    @classmethod
    def whole(cls) -> GroupShare:
        """All of the budget: a process that is not one member of a group among others."""
        return cls(1, 1)

    @property
    def assigned(self) -> int:
        return self._assigned

    @property
    def total(self) -> int:
        return self._total

    @property
    def fraction(self) -> float:
        return self._assigned / self._total

    def of(self, budget: int) -> int:
        """This replica's part of a group-wide budget."""
        if self._assigned == 0:
            return 0
        return max(1, budget * self._assigned // self._total)

    def update(self, assigned: int, total: int) -> None:
        if total < 1 or not 0 <= assigned <= total:
            raise ValueError(f"cannot own {assigned} of {total} partitions")
        if (assigned, total) == (self._assigned, self._total):
            return
        self._assigned, self._total = assigned, total
        for listener in self._listeners:
            listener(self)

    def subscribe(self, listener: ShareListener) -> None:
        self._listeners.append(listener)
