"""A local S3 server (moto, a dev tool) as durable storage for Tansu.

Tansu's ``memory://`` storage forgets everything when the broker stops, so broker-fault
tests give it ``s3://`` storage on this server instead: topics, records and committed
offsets then survive a SIGKILL and restart of the broker. The server itself keeps its data
in memory, so it must outlive every broker restart it is meant to survive.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

from devstack.process import ManagedProcess, ManagedServer, free_port

DEFAULT_BUCKET = "tansu"
_HOST = "127.0.0.1"


class LocalS3Error(RuntimeError):
    pass


class LocalS3(ManagedServer):
    """``moto_server`` on 127.0.0.1 with one bucket. ``start``/``stop`` are synchronous."""

    def __init__(
        self,
        *,
        port: int | None = None,
        bucket: str = DEFAULT_BUCKET,
        log_path: Path | str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.bucket = bucket
        self.startup_timeout = startup_timeout
        if log_path is None:
            log_path = Path(tempfile.gettempdir()) / f"moto-s3-{self.port}.log"
        self.process = ManagedProcess(
            # The interpreter running this code has moto installed (dev extras); its script
            # directory need not be on PATH.
            [sys.executable, "-m", "moto.server", "-H", _HOST, "-p", str(self.port)],
            log_path=Path(log_path),
        )

    @property
    def endpoint(self) -> str:
        return f"http://{_HOST}:{self.port}"

    @property
    def storage_engine(self) -> str:
        """Tansu's ``--storage-engine`` for this server's bucket."""
        return f"s3://{self.bucket}/"

    def tansu_env(self) -> dict[str, str]:
        """The environment Tansu's S3 client needs to use this server (any credentials do)."""
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self) -> None:
        """Spawn the server, wait until it listens, create the bucket.

        Raises ProcessError if the server exits or does not listen in time, LocalS3Error if
        the bucket cannot be created.
        """
        self.process.start()
        try:
            # Werkzeug prints this once its socket is bound: the port is ours, not a
            # leftover server's that would answer just as well.
            self.process.wait_for_line(f"Running on {self.endpoint}", self.startup_timeout)
            # Path-style, the way Tansu addresses the bucket when given AWS_ENDPOINT.
            response = httpx.put(f"{self.endpoint}/{self.bucket}", timeout=5.0)
            if response.status_code != httpx.codes.OK:
                raise LocalS3Error(
                    f"creating bucket {self.bucket} answered {response.status_code}: "
                    f"{response.text[:500]}"
                )
        except BaseException:
            self.process.terminate()
            raise
