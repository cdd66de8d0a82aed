"""The benchmark's input: "data fixed" CloudEvents spread over a fixed set of business objects.

Every object has one event type and the same data in all its events, as in a backfill that
reports the same document several times. Events are built once; only their ``time`` is
filled in when they are sent, since end-to-end latency is measured from it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass
from typing import Any

from regen_sync.domain import Upstream

# One object of each kind in turn, so the four operations get a quarter of the events each.
_KINDS = ("billing", "booking", "invoice", "journal")


@dataclass(frozen=True, slots=True)
class BenchEvent:
    event_id: str
    key: bytes
    upstream: Upstream
    head: bytes
    """The serialised event without its closing brace, so that sending only appends the time."""

    def stamped(self, sent_at: float) -> bytes:
        time = dt.datetime.fromtimestamp(sent_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return self.head + b',"time":"' + time.encode() + b'"}'


def build_events(count: int, objects: int, *, prefix: str, seed: int = 1) -> list[BenchEvent]:
    """``count`` events over ``objects`` objects, as evenly as possible, in a seeded random
    order (the same for every system measured with the same arguments)."""
    if objects < 1 or count < objects:
        raise ValueError(f"need at least one event per object ({count} events, {objects} objects)")
    order = [number % objects for number in range(count)]
    random.Random(seed).shuffle(order)
    return [_event(f"{prefix}-{index}", object_number) for index, object_number in enumerate(order)]


def _event(event_id: str, object_number: int) -> BenchEvent:
    kind = _KINDS[object_number % len(_KINDS)]
    event_type, data = _payload(kind, object_number)
    document: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "urn:bench:backfill",
        "type": event_type,
        "datacontenttype": "application/json",
        "data": data,
    }
    serialised = json.dumps(document, separators=(",", ":")).encode()
    upstream = Upstream.SOFTWAREONE if kind == "journal" else Upstream.ZUORA
    return BenchEvent(event_id, f"{kind}-{object_number}".encode(), upstream, serialised[:-1])


def _payload(kind: str, number: int) -> tuple[str, dict[str, Any]]:
    match kind:
        case "billing":
            return "billing.document.fixed", {
                "documentType": "Invoice",
                "documentNumber": f"INV-{number:08d}",
            }
        case "booking":
            return "booking.fixed", {
                "objectType": "Subscription",
                "subscriptionName": f"A-S{number:08d}",
                "subscriptionVersion": 1,
            }
        case "invoice":
            return "account.charges.fixed", {
                "accountId": f"ACC-{number:08d}",
                "invoiceDate": "2026-11-21",
                "targetDate": "2026-11-30",
            }
        case _:
            return "journal.fixed", {"journalId": f"BJO-{number:08d}"}
