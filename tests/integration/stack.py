"""The processes of the real stack and what tests need to reach them: the sandbox's test
credentials, a regen-sync service process, and a ``Stack`` of its own per test."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import EventSender, ResultWatcher, Sandbox, Topics

from devstack import ManagedProcess, TansuBroker, free_port

PARTITIONS = 6
SANDBOX_CLIENT_ID = "it-client"
SANDBOX_CLIENT_SECRET = "it-client-secret-value"
SANDBOX_API_TOKEN = "it-softwareone-token-value"


def start_sandbox_process(log_path: Path, *flags: str) -> tuple[ManagedProcess, str]:
    """`regen-sync-sandbox` on a free port with the test credentials; returns it and its URL."""
    port = free_port()
    process = ManagedProcess(
        [
            sys.executable,
            "-m",
            "regen_sync_sandbox",
            "--port",
            str(port),
            "--client-id",
            SANDBOX_CLIENT_ID,
            "--client-secret",
            SANDBOX_CLIENT_SECRET,
            "--api-token",
            SANDBOX_API_TOKEN,
            *flags,
        ],
        log_path=log_path,
    )
    process.start()
    try:
        process.wait_for_line("sandbox listening on", timeout=30)
    except BaseException:
        process.terminate()
        raise
    return process, f"http://127.0.0.1:{port}"


class ServiceProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.process = ManagedProcess(
            [sys.executable, "-m", "regen_sync", "run"], env=env, log_path=log_path
        )
        self.http_url = f"http://127.0.0.1:{env['REGEN_HTTP__PORT']}"

    def start(self, wait_for_assignment: bool = True) -> None:
        self.process.start()
        if wait_for_assignment:
            self.process.wait_for_line('"partitions assigned"', timeout=60)

    def metrics(self) -> str:
        return httpx.get(f"{self.http_url}/metrics", timeout=5).text

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.http_url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"service not ready:\n{self.process.log_tail()}")


@dataclass
class Stack:
    """A service of its own, on topics of its own, with its own sandbox and broker when asked
    for."""

    topics: Topics
    service: ServiceProcess
    sandbox: Sandbox
    watcher: ResultWatcher
    sender: EventSender
    new_service: Callable[..., ServiceProcess]
    """``stack.new_service(**env)``: another service process on the same topics, with the
    stack's settings and ``env`` on top; not started yet, stopped at the end of the test."""


async def restart_if_down(broker: TansuBroker) -> None:
    """After a test that failed with its broker down: aiokafka's clients, closed next, raise
    CancelledError from their stop() when the broker is gone."""
    if not broker.process.running:
        await asyncio.to_thread(broker.start)
