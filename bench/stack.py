"""The infrastructure one benchmark run shares: a Tansu broker and the upstream sandbox, both
processes on 127.0.0.1 stopped by PID at the end, plus what the harness asks of them."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx

from devstack import ManagedProcess, TansuBroker, free_port

# Credentials of the local sandbox, which accepts whatever it is started with.
CLIENT_ID = "bench-client"
CLIENT_SECRET = "bench-client-secret-value"  # noqa: S105
API_TOKEN = "bench-softwareone-token-value"  # noqa: S105
# The sandbox's operations that stand for regeneration calls (its token endpoint is not one).
UPSTREAM_OPERATIONS = ("billing", "booking", "invoice", "journal")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def python_command(*arguments: str, **options: object) -> list[str]:
    """``python -m <arguments> --option value ...``; underscores in option names become dashes."""
    command = [sys.executable, "-m", *arguments]
    for name, value in options.items():
        command += [f"--{name.replace('_', '-')}", str(value)]
    return command


class Stack:
    def __init__(self, workdir: Path, partitions: int) -> None:
        self.workdir = workdir
        self.partitions = partitions
        self.broker = TansuBroker(log_path=workdir / "tansu.log")
        port = free_port()
        # No concurrency limit in the sandbox: the limit measured against is the service's C.
        self.sandbox_url = f"http://127.0.0.1:{port}"
        self.sandbox = ManagedProcess(
            python_command(
                "regen_sync_sandbox",
                port=port,
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
                api_token=API_TOKEN,
                concurrency_limit=0,
            ),
            log_path=workdir / "sandbox.log",
        )
        self._control: httpx.AsyncClient | None = None

    def start(self) -> None:
        self.broker.start()
        self.sandbox.start()
        self.sandbox.wait_for_line("sandbox listening on", timeout=30)

    def stop(self) -> None:
        self.sandbox.terminate()
        self.broker.stop()

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    async def create_topics(self, names: list[str]) -> None:
        await self.broker.create_topics(names, self.partitions)

    async def set_latency(self, latency_ms: int) -> None:
        await self._call("PUT", "/_sandbox/latency", json={"ms": latency_ms})

    async def upstream_calls(self) -> int:
        stats = await self._call("GET", "/_sandbox/stats")
        return sum(stats["requests"][operation] for operation in UPSTREAM_OPERATIONS)

    async def forget_requests(self) -> None:
        """The sandbox logs every request; a long run would otherwise hold them all."""
        await self._call("DELETE", "/_sandbox/requests")

    def cpu_seconds(self) -> dict[str, float]:
        return {
            "sandbox": cpu_seconds(self.sandbox.pid),
            "broker": cpu_seconds(self.broker.process.pid),
        }

    async def close(self) -> None:
        if self._control is not None:
            await self._control.aclose()

    async def _call(self, method: str, path: str, **options: Any) -> Any:
        if self._control is None:
            self._control = httpx.AsyncClient(base_url=self.sandbox_url, timeout=30)
        response = await self._control.request(method, path, **options)
        response.raise_for_status()
        return response.json() if response.content else None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The fields after the parenthesised command name start at stat(5)'s third, state;
    # utime and stime are its 14th and 15th.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), in MB."""
    return _status_kb(pid, "VmHWM") / 1024


def rss_mb(pid: int) -> float:
    return _status_kb(pid, "VmRSS") / 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")
