"""The systems the benchmark measures, each started as its own process on fresh topics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bench import lean, naive, pipe
from bench.stack import API_TOKEN, CLIENT_ID, CLIENT_SECRET, Stack, python_command
from devstack import ManagedProcess, free_port
from regen_sync.config import SoftwareOneSettings, UpstreamHttpSettings, ZuoraSettings
from regen_sync.domain import Upstream

ResultId = Callable[[Any], str]

# The sandbox has no request budget. The service's own budgets would cap the event mix at
# SoftwareOne's requests per minute whatever the latency, and so hide what the service itself
# can move; they are lifted, and stated next to the results.
UNLIMITED_REQUESTS_PER_MINUTE = 100_000_000
_SETTINGS: dict[Upstream, type[UpstreamHttpSettings]] = {
    Upstream.ZUORA: ZuoraSettings,
    Upstream.SOFTWAREONE: SoftwareOneSettings,
}


def production_concurrency() -> dict[Upstream, int]:
    """Each upstream's default cap on calls at once, as regen-sync ships."""
    return {
        upstream: settings.model_fields["max_concurrency"].default
        for upstream, settings in _SETTINGS.items()
    }


@dataclass(frozen=True)
class SystemUnderTest:
    name: str
    process: ManagedProcess
    ready_line: str
    """Printed once the system consumes its input."""
    input_topic: str
    result_topics: list[str]
    result_id: ResultId
    """The input event's id, read from a parsed result record."""
    calls_upstream: bool

    @property
    def topics(self) -> list[str]:
        return [self.input_topic, *self.result_topics]


def _source_event_id(result: Any) -> str:
    source_id: str = result["data"]["sourceEventId"]
    return source_id


def _echoed_event_id(event: Any) -> str:
    event_id: str = event["id"]
    return event_id


def regen_sync(
    stack: Stack,
    prefix: str,
    *,
    concurrency: Mapping[Upstream, int],
    env: Mapping[str, str] | None = None,
) -> SystemUnderTest:
    """The service as deployed: ``python -m regen_sync run`` configured by REGEN_* variables,
    production defaults except for what the local stack needs, the concurrency caps, the
    request budgets and ``env``."""
    topics = {name: f"{prefix}.{name}" for name in ("input", "succeeded", "failed", "dlq")}
    settings = {
        "REGEN_KAFKA__BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "REGEN_KAFKA__GROUP_ID": f"regen-sync-{prefix}",
        # Tansu has no idempotent producer.
        "REGEN_KAFKA__ENABLE_IDEMPOTENCE": "false",
        # Tansu holds a fetch until most of this wait has passed even when records arrive
        # meanwhile (Kafka answers at once), so with the default every record read by a
        # caught-up consumer would wait up to ~50 ms more than it does on Kafka.
        "REGEN_KAFKA__FETCH_MAX_WAIT_MS": "20",
        "REGEN_TOPICS__INPUT": topics["input"],
        "REGEN_TOPICS__SUCCEEDED": topics["succeeded"],
        "REGEN_TOPICS__FAILED": topics["failed"],
        "REGEN_TOPICS__DEAD_LETTER": topics["dlq"],
        "REGEN_ZUORA__BASE_URL": stack.sandbox_url,
        "REGEN_ZUORA__CLIENT_ID": CLIENT_ID,
        "REGEN_ZUORA__CLIENT_SECRET": CLIENT_SECRET,
        "REGEN_SOFTWAREONE__BASE_URL": stack.sandbox_url,
        "REGEN_SOFTWAREONE__API_TOKEN": API_TOKEN,
        **{
            f"REGEN_{upstream.name}__{name}": str(value)
            for upstream in Upstream
            for name, value in (
                ("MAX_CONCURRENCY", concurrency[upstream]),
                ("REQUESTS_PER_MINUTE", UNLIMITED_REQUESTS_PER_MINUTE),
            )
        },
        "REGEN_HTTP__HOST": "127.0.0.1",
        "REGEN_HTTP__PORT": str(free_port()),
        "REGEN_SECRETS_DIR": "/nonexistent",
        **(env or {}),
    }
    process = ManagedProcess(
        python_command("regen_sync", "run"),
        env=settings,
        log_path=stack.workdir / f"{prefix}.regen-sync.log",
    )
    return SystemUnderTest(
        name="regen-sync",
        process=process,
        ready_line='"partitions assigned"',
        input_topic=topics["input"],
        # Dead letters repeat the input; every failure also has its regeneration.failed.
        result_topics=[topics["succeeded"], topics["failed"]],
        result_id=_source_event_id,
        calls_upstream=True,
    )


def naive_baseline(stack: Stack, prefix: str, *, consumers: int) -> SystemUnderTest:
    input_topic, results = f"{prefix}.input", f"{prefix}.naive-results"
    consumers = min(consumers, stack.partitions)
    process = ManagedProcess(
        python_command(
            "bench.naive",
            bootstrap_servers=stack.bootstrap_servers,
            input=input_topic,
            partitions=stack.partitions,
            consumers=consumers,
            results=results,
            upstream_url=stack.sandbox_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            api_token=API_TOKEN,
        ),
        log_path=stack.workdir / f"{prefix}.naive-{consumers}.log",
    )
    return SystemUnderTest(
        name=f"naive, {consumers} consumer{'s' if consumers > 1 else ''}",
        process=process,
        ready_line=naive.READY_LINE,
        input_topic=input_topic,
        result_topics=[results],
        result_id=_source_event_id,
        calls_upstream=True,
    )


def lean_pipeline(stack: Stack, prefix: str) -> SystemUnderTest:
    input_topic, results = f"{prefix}.input", f"{prefix}.lean-results"
    process = ManagedProcess(
        python_command(
            "bench.lean",
            bootstrap_servers=stack.bootstrap_servers,
            input=input_topic,
            partitions=stack.partitions,
            group=f"lean-{prefix}",
            results=results,
            upstream_url=stack.sandbox_url,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            api_token=API_TOKEN,
        ),
        log_path=stack.workdir / f"{prefix}.lean.log",
    )
    return SystemUnderTest(
        name=f"lean pipeline ({lean.IN_FLIGHT} calls in flight)",
        process=process,
        ready_line=lean.READY_LINE,
        input_topic=input_topic,
        result_topics=[results],
        result_id=_source_event_id,
        calls_upstream=True,
    )


def broker_pipe(stack: Stack, prefix: str) -> SystemUnderTest:
    input_topic, output = f"{prefix}.input", f"{prefix}.pipe-output"
    process = ManagedProcess(
        python_command(
            "bench.pipe",
            bootstrap_servers=stack.bootstrap_servers,
            input=input_topic,
            partitions=stack.partitions,
            output=output,
        ),
        log_path=stack.workdir / f"{prefix}.pipe.log",
    )
    return SystemUnderTest(
        name="broker pipe",
        process=process,
        ready_line=pipe.READY_LINE,
        input_topic=input_topic,
        result_topics=[output],
        result_id=_echoed_event_id,
        calls_upstream=False,
    )
