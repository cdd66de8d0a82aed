"""Runs events concurrently across objects, in order within an object, with bounded memory.

``submit`` is awaited by the consume loop: when ``max_in_flight`` events are unfinished it
does not return, so the loop stops fetching until one finishes (backpressure). How many
upstream calls run at once is the Regenerator's business, not this one's. Events with
the same ordering key form a chain; each waits for its predecessor, so one slow object
holds back only its own events, not its partition.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from service.kafka.offsets import OffsetTracker, Partition, Ticket
from service.observability import Metrics

logger = logging.getLogger(__name__)

Work = Callable[[], Awaitable[None]]


class Dispatcher:
    def __init__(self, tracker: OffsetTracker, metrics: Metrics, *, max_in_flight: int) -> None:
        self._tracker = tracker
        self._metrics = metrics
        self._window = asyncio.Semaphore(max_in_flight)
        self._chain_tails: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, partition: Partition, offset: int, key: str | None, work: Work) -> None:
        await self._window.acquire()
        ticket = self._tracker.started(partition, offset)
        self._metrics.in_flight.inc()
        predecessor = self._chain_tails.get(key) if key is not None else None
        task = asyncio.create_task(self._run(ticket, key, predecessor, work))
        if key is not None:
            self._chain_tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self, ticket: Ticket, key: str | None, predecessor: asyncio.Task[None] | None, work: Work
    ) -> None:
        try:
            if predecessor is not None:
                # Wait for it to end however it ends; its failure is its own outcome.
                await asyncio.wait([predecessor])
            await work()
            # Only a completed event is committable; a cancelled one is read again.
            self._tracker.finished(ticket)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception(
                "event handling failed; its offset stays uncommitted until a restart",
                extra={"partition": ticket.partition.partition, "offset": ticket.offset},
            )
        finally:
            self._metrics.in_flight.dec()
            self._window.release()
            if key is not None and self._chain_tails.get(key) is asyncio.current_task():
                del self._chain_tails[key]

    async def drain(self, grace_seconds: float) -> bool:
        """Wait for in-flight events, cancel any left after the grace period; True if none was."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        return not pending
