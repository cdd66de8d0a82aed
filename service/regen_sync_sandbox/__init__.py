"""Local simulator of the Zuora and SoftwareOne APIs that regen-sync calls."""

from regen_sync_sandbox.app import SandboxState, create_app
from regen_sync_sandbox.server import SandboxConfig, serve

__all__ = ["SandboxConfig", "SandboxState", "create_app", "serve"]
