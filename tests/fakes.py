"""Test fakes shared by every test directory (``from fakes import ...``)."""

from __future__ import annotations

import json

from regen_sync.domain import RegenerationTask, parse_event, plan
from regen_sync.domain.parsing import InvalidEvent


class Clock:
    """A hand-driven clock for code that takes ``clock: Callable[[], float]``: it reads
    ``now``, which only the test moves (``clock.now += 5`` or ``clock.now = 10.0``)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def planned_task(event_type: str, data: dict[str, object], event_id: str) -> RegenerationTask:
    """The task the service plans for a valid CloudEvent of ``event_type`` carrying ``data``."""
    raw = json.dumps(
        {"specversion": "1.0", "id": event_id, "source": "s", "type": event_type, "data": data}
    ).encode()
    event = parse_event(raw, max_bytes=10_000)
    assert not isinstance(event, InvalidEvent)
    return plan(event)


def journal_task(journal_id: str) -> RegenerationTask:
    """A SoftwareOne journal regeneration; the event id is the journal id."""
    return planned_task("journal.fixed", {"journalId": journal_id}, journal_id)
