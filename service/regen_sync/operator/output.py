"""What the operator commands print: check lines, progress, and never a secret."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import TextIO

REDACTED = "***"


class Status(StrEnum):
    OK = "OK"
    FAIL = "FAIL"
    SKIP = "SKIP"
    """Not run because a check it depends on failed; that failure already fails the run."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    seconds: float | None = None

    def line(self) -> str:
        timing = "" if self.seconds is None else f" [{format_duration(self.seconds)}]"
        return f"{self.status.value:<4} {self.name}: {self.detail}{timing}"


def describe_error(error: BaseException) -> str:
    """``KafkaConnectionError: Unable to bootstrap …``, without repeating a name the message
    already starts with (aiokafka's do)."""
    name, said = type(error).__name__, str(error)
    if not said:
        return name
    return said if said.startswith(name) else f"{name}: {said}"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


class Redactor:
    """Replaces every configured secret in a text: a last guard, should a library ever put
    one into an error message."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted({secret for secret in secrets if secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class Progress:
    """A status line for long runs, on stderr so stdout stays parseable. Quick runs print
    nothing: the first line comes after ``delay`` seconds. On a terminal the line is redrawn
    in place twice a second; in a log, a new line every 5 seconds."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        delay: float = 1.0,
        interval: float | None = None,
    ) -> None:
        self._label = label
        self._total = total
        self._stream = stream if stream is not None else sys.stderr
        self._redraw = self._stream.isatty()
        self._clock = clock
        self._started = clock()
        self._next_at = self._started + delay
        self._interval = interval if interval is not None else 0.5 if self._redraw else 5.0
        self._shown = False

    def update(self, done: int) -> None:
        now = self._clock()
        if now < self._next_at:
            return
        self._next_at = now + self._interval
        self._shown = True
        self._write(self._line(done, now), final=False)

    def finish(self, done: int) -> None:
        """The final count, but only when progress was shown at all."""
        if self._shown:
            self._write(self._line(done, self._clock()), final=True)

    def _write(self, line: str, *, final: bool) -> None:
        if self._redraw:
            self._stream.write(f"\r\x1b[K{line}" + ("\n" if final else ""))
        else:
            self._stream.write(f"{line}\n")
        self._stream.flush()

    def _line(self, done: int, now: float) -> str:
        elapsed = now - self._started
        percent = done * 100 // self._total if self._total else 100
        rate = f", {done / elapsed:.0f}/s" if done and elapsed > 0 else ""
        return f"{self._label} {done}/{self._total} ({percent}%, {elapsed:.0f} s{rate})"
