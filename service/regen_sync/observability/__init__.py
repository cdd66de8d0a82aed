"""Metrics, structured logs and traces."""

from regen_sync.observability.logging import JsonFormatter, configure_logging
from regen_sync.observability.metrics import NO_OPERATION, Metrics
from regen_sync.observability.tracing import EventSpan, Tracing, mark_failed

__all__ = [
    "NO_OPERATION",
    "EventSpan",
    "JsonFormatter",
    "Metrics",
    "Tracing",
    "configure_logging",
    "mark_failed",
]
