"""Metrics and structured logs."""

from service.observability.logging import JsonFormatter, configure_logging
from service.observability.metrics import NO_OPERATION, Metrics

__all__ = ["NO_OPERATION", "JsonFormatter", "Metrics", "configure_logging"]
