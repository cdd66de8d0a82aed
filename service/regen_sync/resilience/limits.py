"""Client-side limits for one upstream scope: how many calls at once, and how many a minute.

The configured figures are the budget of the whole consumer group; a replica works with its
share of them (``GroupShare``), and everything below applies to that share.

Zuora refuses with 429 once a tenant (or entity) is over its concurrency or rate limit, and
failed requests count towards the rate too, so discovering the limit by hitting it wastes
the budget other integrations share. The concurrency cap starts at the configured maximum,
halves on a 429, steps down by one when Zuora reports little headroom
(``Concurrency-Limit-Remaining``), never goes above the limit Zuora reports minus a reserve
(``Concurrency-Limit-Limit``), and climbs back by one per full round of answered calls once
no 429 came for a while.
A ``Retry-After`` / ``ratelimit-reset`` pauses the whole scope, not just the refused event.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

from regen_sync.domain import UpstreamLoad
from regen_sync.resilience.share import GroupShare

# Decreases within this window answer the same overload; they must not compound.
_DECREASE_COOLDOWN_SECONDS = 1.0
# After a 429, growing again at once would only find the limit again.
_QUIET_BEFORE_GROWTH_SECONDS = 5.0
# Zuora advises never using the whole concurrency limit: keep this share of it free.
_HEADROOM_SHARE = 0.1


class AdaptiveConcurrency:
    """A semaphore whose size follows the upstream's pushback (additive increase,
    multiplicative decrease)."""

    def __init__(
        self,
        maximum: int,
        *,
        fraction: float = 1.0,
        on_change: Callable[[int], None] = lambda limit: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._maximum = maximum
        self._limit = maximum
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._answers_since_change = 0
        self._last_decrease = -math.inf
        self._last_throttled = -math.inf
        self._reported_ceiling: int | None = None
        self._fraction = fraction
        self._headroom = True
        self._on_change = on_change
        self._clock = clock
        on_change(maximum)

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def in_use(self) -> int:
        return self._in_use

    async def acquire(self) -> None:
        if self._in_use < self._limit and not self._waiters:
            self._in_use += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            elif waiter in self._waiters:  # a hand-over may have dropped it already
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self._in_use -= 1
        self._hand_over()

    def resize(self, maximum: int, fraction: float) -> None:
        """A new share of the group's budget: ``maximum`` calls, ``fraction`` of the group's
        partitions. A cap that had come down on 429s stays as far down, in proportion."""
        previous, self._maximum, self._fraction = self._maximum, maximum, fraction
        limit = maximum if previous == 0 else round(self._limit * maximum / previous)
        self._set_limit(self._bounded(limit))

    def respect(self, load: UpstreamLoad) -> None:
        """What an answer (any answer) reports about the upstream's concurrency limit."""
        if load.concurrency_limit is None and load.concurrency_remaining is None:
            return
        reserve = max(1, math.ceil((load.concurrency_limit or 0) * _HEADROOM_SHARE))
        if load.concurrency_limit is not None:
            self._reported_ceiling = load.concurrency_limit - reserve
            if self._limit > self._ceiling:
                self._set_limit(self._bounded(self._limit))
        if load.concurrency_remaining is not None:
            self._headroom = load.concurrency_remaining > reserve
            # Others (other integrations, replicas still finishing a hand-over) use the same
            # limit: make room.
            if load.concurrency_remaining < reserve and not self._cooling_down():
                self._set_limit(self._bounded(self._limit - 1))

    def throttled(self) -> None:
        """The upstream answered 429: we are over its limit."""
        self._last_throttled = self._clock()
        if not self._cooling_down():
            self._set_limit(self._bounded(min(self._limit, self._in_use) // 2))

    def answered(self) -> None:
        """An answer other than 429: one step up per full round of them, while the upstream
        reports headroom and has not throttled us for a while."""
        self._answers_since_change += 1
        if (
            self._headroom
            and self._limit < min(self._maximum, self._ceiling)
            and self._answers_since_change >= self._limit
            and self._clock() - self._last_throttled >= _QUIET_BEFORE_GROWTH_SECONDS
        ):
            self._set_limit(self._limit + 1)

    @property
    def _ceiling(self) -> int:
        """The upstream's reported limit less the reserve, for this replica's share of it:
        the limit is the tenant's, shared by the whole group."""
        if self._reported_ceiling is None:
            return self._maximum
        return math.floor(self._reported_ceiling * self._fraction)

    def _bounded(self, limit: int) -> int:
        # Never 0 while the share is not: a replica without a slot would stall its partitions.
        floor = 1 if self._maximum else 0
        return max(floor, min(limit, self._maximum, self._ceiling))

    def _cooling_down(self) -> bool:
        now = self._clock()
        if now - self._last_decrease < _DECREASE_COOLDOWN_SECONDS:
            return True
        self._last_decrease = now
        return False

    def _set_limit(self, limit: int) -> None:
        self._answers_since_change = 0
        if limit == self._limit:
            return
        self._limit = limit
        self._on_change(limit)
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self._in_use < self._limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)


class ScopeLimits:
    """Concurrency cap, request budget and upstream-imposed pauses of one limit scope, for
    this replica's share of the group's budgets."""

    def __init__(
        self,
        *,
        max_concurrency: int,
        requests_per_minute: int,
        share: GroupShare,
        on_concurrency_change: Callable[[int], None] = lambda limit: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._requests_per_minute = requests_per_minute
        self._share = share
        self.concurrency = AdaptiveConcurrency(
            share.of(max_concurrency),
            fraction=share.fraction,
            on_change=on_concurrency_change,
            clock=clock,
        )
        # The bucket holds the group's budget and each request takes budget / share of it, so
        # this replica gets its share of the rate without rebuilding the bucket (and losing
        # its level) on every rebalance.
        self._budget = AsyncLimiter(requests_per_minute, 60)
        self._request_cost = self._cost()
        self._paused_until = 0.0
        self._clock = clock

    def reshare(self) -> None:
        """The replica's share of the group changed: take the new part of each budget."""
        self.concurrency.resize(self._share.of(self._max_concurrency), self._share.fraction)
        self._request_cost = self._cost()

    def _cost(self) -> float:
        return self._requests_per_minute / max(1, self._share.of(self._requests_per_minute))

    async def acquire(self) -> None:
        """Wait for a pause to end, a free call slot and room in the request budget."""
        # A loop, not one sleep: a newer Retry-After may push the end of the pause further.
        while (wait := self._paused_until - self._clock()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)
        await self.concurrency.acquire()
        try:
            await self._budget.acquire(self._request_cost)
        except BaseException:
            self.concurrency.release()
            raise

    def release(self) -> None:
        self.concurrency.release()

    def pause(self, seconds: float) -> None:
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(
        self, *, throttled: bool, retry_after: float | None, load: UpstreamLoad | None
    ) -> None:
        if load is not None:
            self.concurrency.respect(load)
            if load.rate_remaining == 0 and load.rate_reset_seconds:
                self.pause(load.rate_reset_seconds)
        if throttled:
            self.concurrency.throttled()
            if retry_after is not None:
                self.pause(retry_after)
        else:
            self.concurrency.answered()
