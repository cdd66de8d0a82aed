"""Metrics, structured logs and traces."""

from service.observability.logging import JsonFormatter, configure_logging
from service.observability.metrics import NO_OPERATION, Metrics
from service.observability.tracing import EventSpan, Tracing, mark_failed

__all__ = [
    "NO_OPERATION",
    "EventSpan",
    "JsonFormatter",
    "Metrics",
    "Tracing",
    "configure_logging",
    "mark_failed",
]
