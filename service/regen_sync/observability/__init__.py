"""Metrics, structured logs and traces."""

from regen_sync.observability.logging import JsonFormatter, configure_logging, logged_with
from regen_sync.observability.metrics import NO_OPERATION, Metrics
from regen_sync.observability.observer import EventObserver
from regen_sync.observability.tracing import EventSpan, Tracing, mark_failed

__all__ = [
    "NO_OPERATION",
    "EventObserver",
    "EventSpan",
    "JsonFormatter",
    "Metrics",
    "Tracing",
    "configure_logging",
    "logged_with",
    "mark_failed",
]
