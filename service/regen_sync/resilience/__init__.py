"""Protecting upstreams and events from each other: circuit breakers and client-side limits."""

from regen_sync.resilience.circuit import CircuitBreaker, CircuitState
from regen_sync.resilience.gate import GateResult, UpstreamGate
from regen_sync.resilience.limits import AdaptiveConcurrency, ScopeLimits
from regen_sync.resilience.share import GroupShare

__all__ = [
    "AdaptiveConcurrency",
    "CircuitBreaker",
    "CircuitState",
    "GateResult",
    "GroupShare",
    "ScopeLimits",
    "UpstreamGate",
]
