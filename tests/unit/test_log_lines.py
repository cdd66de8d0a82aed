"""Log lines: a repeated third-party complaint is let through once per interval, with a count
of what was held back; the service's own lines are never held back; every line carries the
coordinates of the event being handled."""

import json
import logging

from fakes import Clock

from regen_sync.observability.logging import JsonFormatter, RepeatLimiter, logged_with


def record(logger: str, template: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(logger, logging.ERROR, "x.py", 1, template, args, None)


def test_a_repeated_aiokafka_message_passes_once_per_interval_with_the_count_held_back() -> None:
    clock = Clock()
    limiter = RepeatLimiter("aiokafka", interval_seconds=10, clock=clock)
    unable = "Unable connect to node with id %s: %s"
    passed = [limiter.filter(record("aiokafka", unable, 111, f"try {n}")) for n in range(100)]
    assert passed == [True] + [False] * 99
    # Another template of the same logger is news.
    assert limiter.filter(record("aiokafka", "Unable to update metadata from %s", [111]))
    clock.now = 10.0
    next_line = record("aiokafka", unable, 111, "try 100")
    assert limiter.filter(next_line)
    assert next_line.repeats_suppressed == 99
    clock.now = 25.0
    quiet_line = record("aiokafka", unable, 111, "again")
    assert limiter.filter(quiet_line)
    assert not hasattr(quiet_line, "repeats_suppressed")


def test_the_services_own_lines_are_never_held_back() -> None:
    limiter = RepeatLimiter("aiokafka", interval_seconds=10, clock=Clock())
    assert all(
        limiter.filter(record("regen_sync.processing", "regeneration failed")) for _ in range(50)
    )


def test_a_line_carries_the_bound_coordinates_and_its_own_fields_win() -> None:
    formatter = JsonFormatter()
    line = record("regen_sync.processing", "regeneration failed")
    line.reason = "rejected"
    line.offset = 8
    with logged_with({"topic": "input", "partition": 2, "offset": 7, "event_id": "E7"}):
        inside = json.loads(formatter.format(line))
    outside = json.loads(formatter.format(line))
    assert inside | {"time": "-"} == {
        "time": "-",
        "level": "ERROR",
        "logger": "regen_sync.processing",
        "message": "regeneration failed",
        "topic": "input",
        "partition": 2,
        "offset": 8,
        "event_id": "E7",
        "reason": "rejected",
    }
    assert outside.keys() == {"time", "level", "logger", "message", "reason", "offset"}
