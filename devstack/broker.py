"""A local Tansu broker (Kafka protocol, no Docker) for the demo, the tests and benchmarks.

The binary comes from ``scripts/fetch_tansu.py``. Tansu 0.6.0 quirks clients must respect
(checked with aiokafka 0.14 in tests/integration/test_tansu_broker.py):

- InitProducerId fails, so the idempotent producer and transactions cannot be used
  (``enable_idempotence=False``, aiokafka's default).
- JoinGroup answers after about half the consumer's session timeout, rounded up to whole
  seconds: 5 s with the default 10 s session timeout.
- A group's first generation is 0 and aiokafka sends LeaveGroup only from generation 1, so
  the first member to stop lingers until its session expires and the next member's join
  waits for that (about 18 s with default settings); later generations leave cleanly.
- Any metadata request naming an unknown topic creates it with 4 partitions, so create
  topics explicitly before producing to or subscribing to them.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from devstack.process import ManagedProcess, ManagedServer, free_port

BINARY_ENV = "REGEN_TANSU_BIN"
DEFAULT_BINARY = Path(".cache/tansu/tansu")
DEFAULT_STORAGE_ENGINE = "memory://tansu/"
_HOST = "127.0.0.1"
_PROBE_INTERVAL_S = 0.1


class TansuError(RuntimeError):
    pass


class TansuBinaryNotFoundError(TansuError, FileNotFoundError):
    pass


def default_binary() -> Path:
    """``$REGEN_TANSU_BIN``, else ``.cache/tansu/tansu`` in the working directory or a parent.

    Parents are searched so that commands run from a subdirectory of the checkout work too.
    """
    from_env = os.environ.get(BINARY_ENV)
    if from_env:
        binary = Path(from_env)
        if not binary.is_file():
            raise TansuBinaryNotFoundError(f"{BINARY_ENV}={from_env} is not a file")
        return binary
    cwd = Path.cwd()
    for directory in (cwd, *cwd.parents):
        candidate = directory / DEFAULT_BINARY
        if candidate.is_file():
            return candidate
    raise TansuBinaryNotFoundError(
        f"no Tansu binary at {DEFAULT_BINARY} in {cwd} or its parents: run "
        f"`python3 scripts/fetch_tansu.py` in the repository root, or set {BINARY_ENV}"
    )


class TansuBroker(ManagedServer):
    """One Tansu broker process on 127.0.0.1. ``start``/``stop`` are synchronous.

    A stopped or killed broker can be started again on the same port; with the default
    in-memory storage it then comes back empty.
    """

    def __init__(
        self,
        binary: Path | str | None = None,
        *,
        port: int | None = None,
        storage_engine: str = DEFAULT_STORAGE_ENGINE,
        env: Mapping[str, str] | None = None,
        log_path: Path | str | None = None,
        cluster_id: str | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        """``cluster_id`` defaults to one unique to this instance and kept across restarts;
        pass a fixed one to reopen a persistent storage engine's data from an earlier run.
        """
        self.binary = Path(binary) if binary is not None else default_binary()
        if not self.binary.is_file():
            raise TansuBinaryNotFoundError(
                f"no Tansu binary at {self.binary}: run `python3 scripts/fetch_tansu.py`"
            )
        self.port = port if port is not None else free_port()
        self.storage_engine = storage_engine
        self.cluster_id = cluster_id or f"regen-sync-{uuid.uuid4().hex[:12]}"
        self.startup_timeout = startup_timeout
        if log_path is None:
            log_path = Path(tempfile.gettempdir()) / f"tansu-{self.port}.log"
        url = f"tcp://{_HOST}:{self.port}"
        self.process = ManagedProcess(
            [
                str(self.binary),
                "broker",
                "--cluster-id",
                self.cluster_id,
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                storage_engine,
            ],
            log_path=Path(log_path),
            # Plain text in the log file rather than terminal colour codes.
            env={"NO_COLOR": "1", **(env or {})},
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"{_HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def start(self) -> None:
        """Spawn the broker and block until it answers a Kafka metadata request."""
        self.process.start()
        try:
            self._wait_until_serving()
        except BaseException:
            self.process.terminate()
            raise

    def _wait_until_serving(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.process.running:
                raise TansuError(
                    f"tansu exited with {self.process.returncode} during startup "
                    f"(port {self.port} taken?)\n{self.process.log_tail()}"
                )
            try:
                cluster_id, ports = _metadata_identity(_HOST, self.port, timeout=1.0)
            except (OSError, struct.error) as exc:
                last_error = exc
            else:
                # Another broker already on the port would answer too, while ours fails to
                # bind; only our own cluster id proves the answer came from our process.
                if cluster_id == self.cluster_id and self.port in ports:
                    return
                last_error = TansuError(f"answered by cluster {cluster_id!r}, ports {ports}")
            time.sleep(_PROBE_INTERVAL_S)
        raise TansuError(
            f"tansu did not answer a metadata request on {self.bootstrap_servers} within "
            f"{self.startup_timeout}s (last error: {last_error})\n{self.process.log_tail()}"
        )

    def kill(self) -> None:
        """SIGKILL, to simulate a broker crash."""
        self.process.kill()

    async def create_topics(self, names: Sequence[str], partitions: int) -> None:
        """Create the topics; one that already exists must have ``partitions`` partitions.

        The partition check matters because Tansu silently auto-creates unknown topics with
        4 partitions whenever a client asks for their metadata.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            response = await admin.create_topics(
                [NewTopic(name, partitions, replication_factor=1) for name in names]
            )
            existing: list[str] = []
            failures: list[str] = []
            for topic_error in response.topic_errors:
                topic: str = topic_error[0]
                code: int = topic_error[1]
                if code == TopicAlreadyExistsError.errno:
                    existing.append(topic)
                elif code != 0:
                    failures.append(f"{topic}: {for_code(code).__name__}")
            if existing:
                described: list[dict[str, Any]] = await admin.describe_topics(existing)
                failures.extend(
                    f"{topic['topic']}: exists with {len(topic['partitions'])} partitions, "
                    f"wanted {partitions}"
                    for topic in described
                    if len(topic["partitions"]) != partitions
                )
        finally:
            await admin.close()
        if failures:
            raise TansuError("create_topics failed: " + "; ".join(failures))


def _metadata_identity(host: str, port: int, timeout: float) -> tuple[str | None, list[int]]:
    """Send a Metadata v2 request; return the cluster id and the advertised broker ports.

    Plain sockets rather than aiokafka, so that ``start`` stays synchronous and also works
    when called from inside a running event loop.
    """
    correlation_id = 1
    client_id = b"regen-sync-devstack"
    metadata_api_key, api_version, no_topics = 3, 2, 0
    request = struct.pack(
        f">hhih{len(client_id)}si",
        metadata_api_key,
        api_version,
        correlation_id,
        len(client_id),
        client_id,
        no_topics,
    )
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)
        (size,) = struct.unpack(">i", _recv_exactly(sock, 4))
        response = _recv_exactly(sock, size)
    received_id, broker_count = struct.unpack_from(">ii", response, 0)
    if received_id != correlation_id:
        raise ConnectionError(f"metadata response has correlation id {received_id}")
    ports: list[int] = []
    offset = 8
    for _ in range(broker_count):
        _broker_host, offset = _read_string(response, offset + 4)  # after node_id
        (broker_port,) = struct.unpack_from(">i", response, offset)
        _rack, offset = _read_string(response, offset + 4)
        ports.append(broker_port)
    cluster_id, _ = _read_string(response, offset)
    return cluster_id, ports


def _read_string(buffer: bytes, offset: int) -> tuple[str | None, int]:
    """A Kafka nullable string (int16 length, -1 for null); returns it and the next offset."""
    (length,) = struct.unpack_from(">h", buffer, offset)
    offset += 2
    if length < 0:
        return None, offset
    return buffer[offset : offset + length].decode(), offset + length


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        data += chunk
    return bytes(data)
