"""Runs the sandbox as a real HTTP server for the demo, integration tests and benchmarks."""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from pydantic import BaseModel, ConfigDict, Field

from regen_sync_sandbox.app import create_app


class SandboxConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    # 0 lets the OS pick a free port; the announced line then carries the real one.
    port: int = Field(default=8480, ge=0, le=65535)
    client_id: str = "regen-sync"
    # Well-known credentials of a test double, not secrets.
    client_secret: str = "sandbox-secret"  # noqa: S105
    api_token: str = "sandbox-api-token"  # noqa: S105
    latency_ms: int = Field(default=0, ge=0)
    token_ttl_seconds: int = Field(default=3600, ge=1)
    # Maximum Zuora requests in flight at once; 0 means unlimited.
    concurrency_limit: int = Field(default=40, ge=0)
    # Zuora keeps every processed answer under its Idempotency-Key for 24 h and replays it.
    # Off only for experiments: tests must see the upstream as strict as it is.
    idempotency_store: bool = True


class _AnnouncingServer(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
            # Scripts wait for this line before talking to the sandbox.
            print(f"sandbox listening on http://{host}:{port}", flush=True)


async def serve(config: SandboxConfig) -> None:
    """Serves the sandbox until SIGINT/SIGTERM, or until this coroutine is cancelled."""
    server = _AnnouncingServer(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            log_level="warning",
            lifespan="off",
        )
    )
    running = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        # Cancelling uvicorn mid-loop would leave the listening socket open; ask it to shut
        # down gracefully instead, then let the cancellation continue.
        server.should_exit = True
        await running
        raise
