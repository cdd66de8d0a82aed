"""Child processes for the demo and the tests: the broker, the service, the upstream sandbox."""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

_POLL_INTERVAL_S = 0.05

_running: set[ManagedProcess] = set()


@atexit.register
def _terminate_leftovers() -> None:
    # A demo script that dies on an exception would otherwise leave its children running,
    # holding their ports, with no one left who knows their PIDs.
    for process in list(_running):
        process.terminate(timeout=5.0)


class ProcessError(RuntimeError):
    pass


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Another process may grab it before the caller binds it; acceptable for local runs.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """One command run in the background with stdout and stderr appended to a log file.

    The log file is appended to, so restarting the same process (e.g. after ``kill()`` in a
    crash test) keeps the earlier run's output for diagnosis; ``wait_for_line`` only looks
    at what the current run wrote.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path | str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """``env`` is added to (and overrides) the inherited environment."""
        if not argv:
            raise ValueError("argv must not be empty")
        self.argv = list(argv)
        self.log_path = Path(log_path)
        self.env = dict(env or {})
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> None:
        if self.running:
            raise ProcessError(f"{self.argv[0]} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The child keeps its own copy of the descriptor; ours is not needed after spawning.
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self._popen = subprocess.Popen(  # noqa: S603
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=self.cwd,
            )
        _running.add(self)

    @property
    def pid(self) -> int:
        return self._started().pid

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); negative N means killed by signal N."""
        if self._popen is None:
            return None
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_for_line(self, text: str, timeout: float) -> str:
        """Block until this run's output has a line containing ``text``; return that line.

        Raises ProcessError, with the log tail, if the process exits first or time runs out.
        """
        popen = self._started()
        deadline = time.monotonic() + timeout
        offset = self._log_start
        pending = b""
        needle = text.encode()
        while True:
            # Checked before reading so that output written just before exiting is still seen.
            exited = popen.poll() is not None
            with self.log_path.open("rb") as log:
                log.seek(offset)
                chunk = log.read()
            offset += len(chunk)
            *complete, pending = (pending + chunk).split(b"\n")
            if exited:
                complete.append(pending)
            for line in complete:
                if needle in line:
                    return line.decode(errors="replace").rstrip("\r")
            if exited:
                raise ProcessError(
                    f"{self.argv[0]} exited with {popen.returncode} before printing {text!r}"
                    f"\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ProcessError(
                    f"{self.argv[0]} did not print {text!r} within {timeout}s\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def terminate(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Safe to call repeatedly.

        Returns the exit code (None if the process was never started).
        """
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
        _running.discard(self)
        return self._popen.returncode

    def kill(self) -> None:
        """SIGKILL with no chance to clean up, for crash tests. Safe to call repeatedly."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait()
        _running.discard(self)

    def log_tail(self, n: int = 40) -> str:
        """The last ``n`` lines of the log file (all runs), for error messages."""
        try:
            with self.log_path.open("rb") as log:
                lines = deque(log, maxlen=n)
        except FileNotFoundError:
            return f"(no log file at {self.log_path})"
        body = b"".join(lines).decode(errors="replace").rstrip("\n")
        return f"--- last {len(lines)} lines of {self.log_path} ---\n{body}"

    def _started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise ProcessError(f"{self.argv[0]} has not been started")
        return self._popen


class ManagedServer(ABC):
    """A local server run as one ``ManagedProcess``: ``start`` blocks until it serves, ``stop``
    ends it, and ``with server:`` does both."""

    process: ManagedProcess

    @abstractmethod
    def start(self) -> None:
        """Spawn the process and block until the server serves."""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Safe to call repeatedly."""
        self.process.terminate(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
