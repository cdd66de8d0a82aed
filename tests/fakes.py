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


def journal_task(journal_id: str) -> RegenerationTask:
    """A SoftwareOne journal.fixed task whose event id is the journal id."""
    raw = json.dumps(
        {
            "specversion": "1.0",
            "id": journal_id,
            "source": "s",
            "type": "journal.fixed",
            "data": {"journalId": journal_id},
        }
    ).encode()
    event = parse_event(raw, max_bytes=10_000)
    assert not isinstance(event, InvalidEvent)
    return plan(event)


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
