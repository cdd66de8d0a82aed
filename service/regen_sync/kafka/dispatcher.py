"""Runs events concurrently across objects, in order within an object, with bounded memory.

``submit`` is awaited by the consume loop: when a lane (one per upstream) has
``max_in_flight`` unfinished events it does not return, so the loop stops fetching until one
finishes (backpressure). Lanes keep an upstream whose circuit is open, and whose events
therefore wait, from using up the window of the other upstream.

Events with the same ordering key queue behind each other and one worker per key runs them,
each group in a task of its own.
The worker hands the next event to the handler as a ``SharedCall``. When the call is closed,
at the moment it is about to go out upstream, the events queued right behind it with the
same merge key join it and are served by that one call (coalescing). Closing at the call,
not when the event is taken, lets every identical event that arrived while the call waited
for a slot join it; an event that arrives after the call went out waits for the next call.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from regen_sync.coalescing import SharedCall
from regen_sync.kafka.offsets import Partition, Ticket
from regen_sync.observability import Metrics

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

_DELIVERY_WAIT_SECONDS = 1.0
"""How long cancelled events may take to finish publishing results already on their way out
(milliseconds while the broker is there); bounded, because a rebalance or a shutdown waits."""


@dataclass(eq=False, slots=True)
class _Entry(Generic[Item]):
    ticket: Ticket
    item: Item
    lane: str
    merge_key: Hashable | None


class _SharedCall(Generic[Item]):
    """The ``SharedCall`` of one handling: the first waiting event of its key, joined by the
    identical events queued behind it when ``close`` is called. Never closed, it is just the
    first."""

    __slots__ = ("_entries", "_on_finished", "_queue")

    def __init__(
        self,
        first: _Entry[Item],
        queue: collections.deque[_Entry[Item]] | None,
        on_finished: Callable[[Ticket], None],
    ) -> None:
        self._entries = [first]
        self._queue = queue if first.merge_key is not None else None
        self._on_finished = on_finished

    @property
    def first(self) -> Item:
        return self._entries[0].item

    def close(self) -> list[Item]:
        """Take in the events queued right behind with the same merge key, then no more."""
        if self._queue is not None:
            merge_key = self._entries[0].merge_key
            while self._queue and self._queue[0].merge_key == merge_key:
                self._entries.append(self._queue.popleft())
            self._queue = None
        return [entry.item for entry in self._entries]

    def finished(self, item: Item) -> None:
        """``item``'s result is out: its offset is committable even if the handling of the
        rest of the group is cut short (a hand-over cancels it)."""
        for entry in self._entries:
            if entry.item is item:
                self._on_finished(entry.ticket)

    @property
    def entries(self) -> list[_Entry[Item]]:
        return self._entries

    def touches(self, partitions: set[Partition]) -> bool:
        return any(entry.ticket.partition in partitions for entry in self._entries)


class Dispatcher(Generic[Item]):
    def __init__(
        self,
        on_finished: Callable[[Ticket], None],
        metrics: Metrics,
        *,
        max_in_flight: int,
        handle: Callable[[SharedCall[Item]], Awaitable[None]],
        merge_key: Callable[[Item], Hashable | None] = lambda item: None,
    ) -> None:
        self._on_finished = on_finished
        self._metrics = metrics
        self._max_in_flight = max_in_flight
        self._handle = handle
        self._merge_key = merge_key
        self._windows: dict[str, asyncio.Semaphore] = {}
        self._queues: dict[str, collections.deque[_Entry[Item]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[asyncio.Task[None], _SharedCall[Item]] = {}
        self._unfinished: collections.Counter[Partition] = collections.Counter()
        self._progress = asyncio.Event()

    async def submit(
        self,
        item: Item,
        *,
        key: str | None,
        lane: str,
        admit: Callable[[], Ticket | None],
    ) -> bool:
        """Start the item once its lane has room, under the ticket ``admit`` gives it then;
        None from ``admit`` means it is no longer wanted (its partition was revoked while it
        waited). True if it was started; ``on_finished`` gets the ticket when it finishes."""
        window = self._windows.setdefault(lane, asyncio.Semaphore(self._max_in_flight))
        await window.acquire()
        if (ticket := admit()) is None:
            window.release()
            return False
        entry = _Entry(ticket, item, lane, self._merge_key(item))
        self._unfinished[ticket.partition] += 1
        self._metrics.in_flight.inc()
        if key is None:
            self._start(_SharedCall(entry, None, self._on_finished))
        elif (queue := self._queues.get(key)) is not None:
            queue.append(entry)
        else:
            self._queues[key] = collections.deque([entry])
            self._spawn(self._work_through(key))
        return True

    async def _work_through(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                # A task per group, so that a hand-over can cancel one object's running event
                # and this worker goes on with the object's next one.
                await asyncio.wait(
                    [self._start(_SharedCall(queue.popleft(), queue, self._on_finished))]
                )
        finally:
            # Reached with a non-empty queue only when cancelled at shutdown.
            del self._queues[key]
            while queue:
                self._ended(queue.popleft())

    async def _run(self, group: _SharedCall[Item]) -> None:
        try:
            await self._handle(group)
            # Only completed events are committable; a cancelled one is read again.
            for entry in group.entries:
                self._on_finished(entry.ticket)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The handler turns every failure into a result; reaching this is a bug.
            logger.exception(
                "event handling failed; its offset stays uncommitted until a restart",
                extra={
                    "records": [
                        f"{entry.ticket.partition.topic}/{entry.ticket.partition.partition}/"
                        f"{entry.ticket.offset}"
                        for entry in group.entries
                    ]
                },
            )

    def _ended(self, entry: _Entry[Item]) -> None:
        self._metrics.in_flight.dec()
        self._windows[entry.lane].release()
        self._unfinished[entry.ticket.partition] -= 1
        self._progress.set()

    def _start(self, group: _SharedCall[Item]) -> asyncio.Task[None]:
        task = self._spawn(self._run(group))
        self._running[task] = group
        # A callback, not a `finally`: a task cancelled before its first step never runs one.
        task.add_done_callback(lambda done: self._group_ended(done, group))
        return task

    def _group_ended(self, task: asyncio.Task[None], group: _SharedCall[Item]) -> None:
        del self._running[task]
        for entry in group.entries:
            self._ended(entry)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def unfinished(self, partitions: set[Partition] | None = None) -> int:
        if partitions is None:
            return self._unfinished.total()
        return sum(self._unfinished[partition] for partition in partitions)

    async def drain(self, grace_seconds: float, partitions: set[Partition] | None = None) -> bool:
        """Wait up to the grace period for the events of ``partitions`` (default: all) to
        finish; True if they all did.

        What is left when time runs out is cancelled and will be read again: on a shutdown,
        everything; on a hand-over (``partitions`` given), the revoked partitions' events,
        queued or running, so that no result of theirs appears after their final commit.
        A result already on its way out is seen through first (see ``ReliableDelivery``), and
        its offset counts as finished.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self.unfinished(partitions) and (remaining := deadline - loop.time()) > 0:
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), remaining)
        if not self.unfinished(partitions):
            return True
        if partitions is None:
            # The workers first, so that none starts its object's next event meanwhile.
            workers = self._tasks - self._running.keys()
            for worker in workers:
                worker.cancel()
            await self._cancel(self._running)
            await asyncio.gather(*workers, return_exceptions=True)
        else:
            self._drop_waiting(partitions)
            await self._cancel(
                {task: group for task, group in self._running.items() if group.touches(partitions)}
            )
        return False

    def _drop_waiting(self, partitions: set[Partition]) -> None:
        for queue in self._queues.values():
            kept = [entry for entry in queue if entry.ticket.partition not in partitions]
            for entry in queue:
                if entry.ticket.partition in partitions:
                    self._ended(entry)
            queue.clear()
            queue.extend(kept)

    async def _cancel(self, running: dict[asyncio.Task[None], _SharedCall[Item]]) -> None:
        """Cancel running events, giving results already on their way out a moment to land."""
        cancelled = dict(running)
        for task in cancelled:
            task.cancel()
        if not cancelled:
            return
        _, stuck = await asyncio.wait(cancelled, timeout=_DELIVERY_WAIT_SECONDS)
        if stuck:
            # Their results could not be published in time (the broker is away): give them
            # up. Should one still reach Kafka, the partition's next owner publishes it again.
            for task in stuck:
                task.cancel()
            await asyncio.wait(stuck, timeout=_DELIVERY_WAIT_SECONDS)
            logger.warning(
                "gave up results still being published",
                extra={"events": sum(len(cancelled[task].entries) for task in stuck)},
            )
