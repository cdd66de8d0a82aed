"""One JSON object per log line, with the event's coordinates as fields.

The coordinates of the event being handled (topic, partition, offset, event id, type) are
bound once per event (``LOG_FIELDS``, see ``logged_with``) and the formatter adds them to every
line written while it is handled, whichever module writes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


LOG_FIELDS: ContextVar[Mapping[str, object]] = ContextVar(
    "regen_sync_log_fields", default=MappingProxyType({})
)
"""Fields of every line logged in this context: the coordinates of the event being handled."""


def logged_with(fields: Mapping[str, object]) -> contextlib.AbstractContextManager[None]:
    """Lines logged inside carry ``fields`` (a line's own ``extra=`` wins over them)."""
    return _BoundFields(fields)


class _BoundFields(contextlib.AbstractContextManager[None]):
    # A class, not a generator: entered several times per event on the hot path.
    __slots__ = ("_fields", "_token")

    def __init__(self, fields: Mapping[str, object]) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = LOG_FIELDS.set(self._fields)

    def __exit__(self, *exc_info: object) -> None:
        LOG_FIELDS.reset(self._token)


class JsonFormatter(logging.Formatter):
    """Formats at emit time, in the context of the code that logged (handlers are synchronous):
    that is where ``LOG_FIELDS`` holds that code's event."""

    converter = staticmethod(time.gmtime)  # UTC, to match the "Z" suffix

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(LOG_FIELDS.get())
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class RepeatLimiter(logging.Filter):
    """Lets each message template of the filtered loggers through once per ``interval_seconds``;
    the next line that passes says how many were held back (``repeats_suppressed``).

    aiokafka logs every failed reconnect and metadata refresh, about 100 lines a second while
    the broker is away, which buries everything else and costs log storage for no news."""

    def __init__(
        self, prefix: str, interval_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._prefix = prefix
        self._interval = interval_seconds
        self._clock = clock
        self._last_passed: dict[tuple[str, object], float] = {}
        self._suppressed: dict[tuple[str, object], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefix):
            return True
        template = (record.name, record.msg)
        now = self._clock()
        last = self._last_passed.get(template)
        if last is not None and now - last < self._interval:
            self._suppressed[template] = self._suppressed.get(template, 0) + 1
            return False
        self._last_passed[template] = now
        if suppressed := self._suppressed.pop(template, 0):
            record.repeats_suppressed = suppressed
        return True


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RepeatLimiter("aiokafka", interval_seconds=10.0))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request URL at INFO; the service logs its own, with context.
    for noisy in ("httpx", "httpcore", "aiokafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
