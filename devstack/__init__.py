"""Local stand-ins for production infrastructure: a Kafka-protocol broker, S3 storage for it,
and child processes."""

from devstack.broker import (
    TansuBinaryNotFoundError,
    TansuBroker,
    TansuError,
    default_binary,
)
from devstack.process import ManagedProcess, ProcessError, free_port
from devstack.s3 import LocalS3, LocalS3Error

__all__ = [
    "LocalS3",
    "LocalS3Error",
    "ManagedProcess",
    "ProcessError",
    "TansuBinaryNotFoundError",
    "TansuBroker",
    "TansuError",
    "default_binary",
    "free_port",
]
