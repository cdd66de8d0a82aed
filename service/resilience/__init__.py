"""Protecting upstreams and events from each other: circuit breakers and client-side limits."""

from service.resilience.circuit import CircuitBreaker, CircuitState
from service.resilience.gate import GateResult, UpstreamGate
from service.resilience.limits import AdaptiveConcurrency, ScopeLimits
from service.resilience.share import GroupShare

__all__ = [
    "AdaptiveConcurrency",
    "CircuitBreaker",
    "CircuitState",
    "GateResult",
    "GroupShare",
    "ScopeLimits",
    "UpstreamGate",
]
