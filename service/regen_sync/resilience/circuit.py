"""A circuit breaker that makes callers wait, not fail.

While an upstream is down, calling it only burns attempts and turns good events into
failures. Once enough *distinct* events have failed in a row, the circuit opens: callers
wait in ``admit`` instead of calling, and after ``open_seconds`` one of them is let through
as a probe. A probe that gets an answer closes the circuit and releases everyone; a probe
that fails opens it again for twice as long (up to ``max_open_seconds``).

Counting distinct events, not attempts, keeps one event that fails on its own (a document
Zuora always times out on) from stopping traffic for every other event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from enum import IntEnum

logger = logging.getLogger(__name__)


class CircuitState(IntEnum):
    # The values are the regen_circuit_state gauge's.
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        open_seconds: float,
        max_open_seconds: float,
        on_change: Callable[[CircuitState], None] = lambda state: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._failure_threshold = failure_threshold
        self._open_seconds = open_seconds
        self._max_open_seconds = max_open_seconds
        self._on_change = on_change
        self._clock = clock
        self._state = CircuitState.CLOSED
        self._failing_keys: set[str] = set()
        self._opened_at = 0.0
        self._open_for = open_seconds
        self._probing = False
        self._changed = asyncio.Condition()

    @property
    def state(self) -> CircuitState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is CircuitState.CLOSED

    async def admit(self) -> bool:
        """Wait until a call may be made. True when the caller is the half-open probe: it
        must then report with ``record`` or give the turn back with ``abandon``."""
        async with self._changed:
            while True:
                if self._state is CircuitState.CLOSED:
                    return False
                if self._state is CircuitState.OPEN:
                    remaining = self._opened_at + self._open_for - self._clock()
                    if remaining > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), remaining)
                        continue
                    self._set_state(CircuitState.HALF_OPEN)
                if not self._probing:
                    self._probing = True
                    return True
                await self._changed.wait()

    async def record(self, key: str, *, outage: bool, probe: bool) -> None:
        """The end of an admitted call. ``outage``: it failed in a way that says the upstream
        cannot serve anyone (no answer, 5xx); any other ending shows the upstream works."""
        async with self._changed:
            if probe:
                self._probing = False
            if not outage:
                self._failing_keys.clear()
                if self._state is not CircuitState.CLOSED:
                    self._open_for = self._open_seconds
                    self._set_state(CircuitState.CLOSED)
            elif probe and self._state is CircuitState.HALF_OPEN:
                self._open_for = min(self._open_for * 2, self._max_open_seconds)
                self._open(f"probe failed; next probe in {self._open_for:g} s")
            elif self._state is CircuitState.CLOSED:
                self._failing_keys.add(key)
                if len(self._failing_keys) >= self._failure_threshold:
                    self._open(f"{len(self._failing_keys)} events failed in a row")
            self._changed.notify_all()

    async def abandon(self) -> None:
        """A probe that ended without an answer of its own (cancelled): let another probe."""
        async with self._changed:
            self._probing = False
            self._changed.notify_all()

    def _open(self, why: str) -> None:
        self._opened_at = self._clock()
        self._failing_keys.clear()
        self._set_state(CircuitState.OPEN)
        logger.warning("circuit opened", extra={"upstream": self.name, "cause": why})

    def _set_state(self, state: CircuitState) -> None:
        if state is self._state:
            return
        self._state = state
        if state is CircuitState.CLOSED:
            logger.info("circuit closed", extra={"upstream": self.name})
        self._on_change(state)
