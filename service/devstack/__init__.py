"""Local stand-ins for production infrastructure: a Kafka-protocol broker and child processes."""

from service.devstack.broker import (
    TansuBinaryNotFoundError,
    TansuBroker,
    TansuError,
    default_binary,
)
from service.devstack.process import ManagedProcess, ProcessError, free_port

__all__ = [
    "ManagedProcess",
    "ProcessError",
    "TansuBinaryNotFoundError",
    "TansuBroker",
    "TansuError",
    "default_binary",
    "free_port",
]
