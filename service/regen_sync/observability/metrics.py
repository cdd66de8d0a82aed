"""Prometheus metrics of regen-sync. Labels never carry ids: only bounded vocabularies."""

from __future__ import annotations

from typing import Any, Self

from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client import Counter as _PrometheusCounter
from prometheus_client import Gauge as _PrometheusGauge
from prometheus_client import Histogram as _PrometheusHistogram
from prometheus_client.metrics import MetricWrapperBase

from regen_sync.domain import EVENT_TYPES, FailureReason, Operation, Upstream

UNKNOWN_TYPE = "unknown"
BUDGETS = ("max_concurrency", "requests_per_minute")
"""The group-wide upstream budgets each replica gets a share of (``regen_budget_share``)."""
NO_OPERATION = "none"
# Upstream calls take from tens of milliseconds to tens of seconds.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _BoundOnce(MetricWrapperBase):
    """A labelled metric whose child for a label set is bound once and kept: ``labels(...)``
    runs on every event, and prometheus-client converts and locks on every call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bound: dict[tuple[Any, ...], Self] = {}

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> Self:
        if labelkwargs:
            return super().labels(*labelvalues, **labelkwargs)
        try:
            return self._bound[labelvalues]
        except KeyError:
            child = self._bound[labelvalues] = super().labels(*labelvalues)
            return child


class Counter(_BoundOnce, _PrometheusCounter):
    pass


class Gauge(_BoundOnce, _PrometheusGauge):
    pass


class Histogram(_BoundOnce, _PrometheusHistogram):
    pass


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.events_received = Counter(
            "regen_events_received",
            "Input records read, by CloudEvent type ('unknown' when unreadable or unknown).",
            ["type"],
            registry=self.registry,
        )
        self.upstream_requests = Counter(
            "regen_upstream_requests",
            "Upstream regeneration attempts, by operation and outcome "
            "(succeeded, rejected, transient).",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "regen_upstream_request_duration_seconds",
            "Time from sending an upstream request to its full answer.",
            ["operation"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.results = Counter(
            "regen_results",
            "Result events published, by operation, outcome and failure reason.",
            ["operation", "outcome", "reason"],
            registry=self.registry,
        )
        self.retries = Counter(
            "regen_retries",
            "Upstream attempts repeated after a transient failure.",
            ["operation"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "regen_dead_letters",
            "Input records copied to the dead-letter topic, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.dead_letters_truncated = Counter(
            "regen_dead_letters_truncated",
            "Dead letters whose value was cut to 64 KiB because the whole record was refused as "
            "too large (dead-letter topic's max.message.bytes below the input's, or above "
            "REGEN_KAFKA__MAX_REQUEST_BYTES), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "regen_events_in_flight",
            "Input records read and not yet finished (their offsets are not committable).",
            registry=self.registry,
        )
        self.token_refreshes = Counter(
            "regen_token_refreshes",
            "Zuora OAuth token requests, by outcome (success, failure).",
            ["outcome"],
            registry=self.registry,
        )
        self.publish_errors = Counter(
            "regen_publish_errors",
            "Failed attempts to publish a result or dead letter (they are retried).",
            registry=self.registry,
        )
        self.commits = Counter(
            "regen_offset_commits",
            "Offset commits, by outcome (success, failure).",
            ["outcome"],
            registry=self.registry,
        )
        self.circuit_state = Gauge(
            "regen_circuit_state",
            "Circuit breaker state per upstream: 0 closed, 1 half-open (probing), 2 open.",
            ["upstream"],
            registry=self.registry,
        )
        self.circuit_opened = Counter(
            "regen_circuit_opened",
            "Times the circuit of an upstream opened after repeated transient failures.",
            ["upstream"],
            registry=self.registry,
        )
        self.events_held = Gauge(
            "regen_events_held",
            "Events waiting for an open circuit to close (they neither call nor fail).",
            ["upstream"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "regen_upstream_throttled",
            "Upstream answers of 429 Too Many Requests (rate or concurrency limit).",
            ["upstream"],
            registry=self.registry,
        )
        self.concurrency_limit = Gauge(
            "regen_upstream_concurrency_limit",
            "Current client-side cap on concurrent calls per upstream (adapts down on 429).",
            ["upstream"],
            registry=self.registry,
        )
        self.budget_share = Gauge(
            "regen_budget_share",
            "This replica's share of the consumer group's upstream budget (max_concurrency, "
            "requests_per_minute), from its share of the input partitions.",
            ["upstream", "budget"],
            registry=self.registry,
        )
        self.partitions_assigned = Gauge(
            "regen_partitions_assigned",
            "Input partitions assigned to this replica.",
            registry=self.registry,
        )
        self.coalesced = Counter(
            "regen_coalesced_events",
            "Events served by an upstream call made for an identical event of the same object.",
            ["operation"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "regen_consumer_lag",
            "Records in the input topic not yet committed by this consumer group "
            "(high watermark minus committed offset), per assigned partition.",
            ["topic", "partition"],
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._initialise_series()

    def _initialise_series(self) -> None:
        # Series that exist from the start let rate() and alerts see a zero, not "no data".
        for event_type in (*EVENT_TYPES, UNKNOWN_TYPE):
            self.events_received.labels(event_type)
        for operation in Operation:
            self.upstream_latency.labels(operation)
            self.retries.labels(operation)
            self.results.labels(operation, "succeeded", "")
            for outcome in ("succeeded", "rejected", "transient"):
                self.upstream_requests.labels(operation, outcome)
        self.results.labels(NO_OPERATION, "failed", FailureReason.INVALID_EVENT)
        for reason in FailureReason:
            self.dead_letters_truncated.labels(reason)
        for upstream in Upstream:
            self.circuit_state.labels(upstream)
            self.circuit_opened.labels(upstream)
            self.events_held.labels(upstream)
            self.throttled.labels(upstream)
            self.concurrency_limit.labels(upstream)
            for budget in BUDGETS:
                self.budget_share.labels(upstream, budget)
        for operation in Operation:
            self.coalesced.labels(operation)
        for outcome in ("success", "failure"):
            self.token_refreshes.labels(outcome)
            self.commits.labels(outcome)

    def event_received(self, event_type: str | None) -> None:
        self.events_received.labels(event_type if event_type in EVENT_TYPES else UNKNOWN_TYPE).inc()
