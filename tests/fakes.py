"""Test doubles and builders shared by the test modules (``from fakes import ...``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Generic, TypeVar

from regen_sync.config import CircuitSettings, ProcessingSettings, UpstreamHttpSettings
from regen_sync.domain import RegenerationTask, Upstream, parse_event, plan
from regen_sync.domain.parsing import InvalidEvent
from regen_sync.observability import Metrics
from regen_sync.regeneration import Regenerator
from regen_sync.resilience import GroupShare, UpstreamGate
from regen_sync.upstream import UpstreamClient

Item = TypeVar("Item")


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


def softwareone_regenerator(
    upstream: UpstreamClient,
    *,
    max_concurrency: int = 10,
    circuit: CircuitSettings | None = None,
    metrics: Metrics | None = None,
    **settings: object,
) -> Regenerator:
    """A Regenerator for SoftwareOne tasks with short backoffs; ``settings`` are
    ProcessingSettings fields."""
    processing = ProcessingSettings.model_validate(
        {"backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02} | settings
    )
    metrics = metrics or Metrics()
    gate = UpstreamGate(
        Upstream.SOFTWAREONE,
        UpstreamHttpSettings(max_concurrency=max_concurrency),
        circuit or CircuitSettings(),
        metrics,
        max_pause_seconds=processing.max_retry_after_seconds,
        share=GroupShare.whole(),
    )
    return Regenerator(
        {Upstream.SOFTWAREONE: upstream}, {Upstream.SOFTWAREONE: gate}, processing, metrics
    )


class CountingSharedCall(Generic[Item]):
    """A shared call serving its first item alone, counting how often it was closed."""

    def __init__(self, first: Item) -> None:
        self._first = first
        self.closed = 0
        self.finished_items: list[Item] = []

    @property
    def first(self) -> Item:
        return self._first

    def close(self) -> Sequence[Item]:
        self.closed += 1
        return [self._first]

    def finished(self, item: Item) -> None:
        self.finished_items.append(item)
