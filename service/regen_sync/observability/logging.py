"""One JSON object per log line, with the event's coordinates as fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    converter = staticmethod(time.gmtime)  # UTC, to match the "Z" suffix

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
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
