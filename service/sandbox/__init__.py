"""Local simulator of the Zuora and SoftwareOne APIs that regen-sync calls."""

from service.sandbox.app import SandboxState, create_app
from service.sandbox.server import SandboxConfig, serve

__all__ = ["SandboxConfig", "SandboxState", "create_app", "serve"]
