"""The benchmark plan and its execution: which systems run in which scenario, in what order."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.events import BenchEvent, build_events
from bench.measure import Limits, Load, Measurement, measure
from bench.report import (
    BACKLOG,
    COALESCING,
    COALESCING_OFF,
    COALESCING_ON,
    CONCURRENCY_LIMIT,
    HALF_RATE,
    LATENCY,
    LEAN,
    NAIVE_PER_PARTITION,
    NAIVE_SINGLE,
    PIPE,
    REGEN_SYNC,
    Row,
)
from bench.stack import Stack
from bench.systems import (
    SystemUnderTest,
    broker_pipe,
    lean_pipeline,
    naive_baseline,
    production_concurrency,
    regen_sync,
)
from regen_sync.domain import Upstream

COALESCE_VARIABLE = "REGEN_PROCESSING__COALESCE"


@dataclass(frozen=True)
class Plan:
    latencies_ms: tuple[int, ...] = (0, 50, 250)
    events: int = 20_000
    objects: int = 2_000
    partitions: int = 6
    concurrency: int | None = None
    """C for every upstream; None keeps each upstream's production default."""
    naive_seconds: float = 20.0
    """The naive baseline's time box: at L = 250 ms it would need a quarter of an hour."""
    half_rate_latency_ms: int | None = 50
    """Measured only when this latency is among ``latencies_ms`` (its maximum rate is)."""
    half_rate_seconds: float = 20.0
    half_rate_warm_up_seconds: float = 2.0
    """Sent first at the same rate, left out of the half-rate latency figures."""
    coalescing_latency_ms: int | None = 250
    """Events wait for an object only while the upstream is the bottleneck, as with the
    hundreds of milliseconds per call of a backfill; at low latency they rarely do."""
    coalescing_events: int = 20_000
    coalescing_objects: int = 1_000
    uncoalesced_seconds: float = 60.0
    """Time box of the run with coalescing off, which at L = 250 ms is bound by C/L."""
    backlog_latency_ms: int | None = 50
    backlog_events: int = 100_000
    backlog_seconds: float = 60.0
    stall_seconds: float = 60.0
    profile: Path | None = None
    """After the scenarios, run regen-sync once more at the first latency with py-spy
    attached, writing its stacks to this file (py-spy's raw format). Sampling slows the
    service down a little, so that run is kept out of the table."""


SMOKE = Plan(
    latencies_ms=(0,),
    events=600,
    objects=60,
    naive_seconds=5.0,
    half_rate_latency_ms=None,
    coalescing_events=600,
    coalescing_objects=30,
    backlog_latency_ms=None,
    stall_seconds=30.0,
)

Progress = Callable[[Row], None]


class Runner:
    def __init__(self, plan: Plan, stack: Stack, run_id: str, progress: Progress) -> None:
        self.plan = plan
        self.stack = stack
        self.run_id = run_id
        self._progress = progress
        self.concurrency = effective_concurrency(plan)
        self.rows: list[Row] = []

    async def run(self) -> list[Row]:
        for latency in self.plan.latencies_ms:
            await self._latency_scenario(latency)
        if self.plan.coalescing_latency_ms is not None:
            await self._coalescing(self.plan.coalescing_latency_ms)
        if self.plan.backlog_latency_ms is not None:
            await self._backlog(self.plan.backlog_latency_ms)
        return self.rows

    async def profile(self, output: Path) -> Measurement:
        plan, latency = self.plan, self.plan.latencies_ms[0]
        prefix = f"{self.run_id}.profile"
        await self.stack.set_latency(latency)
        return await measure(
            self.stack,
            self._regen_sync(prefix),
            Load(build_events(plan.events, plan.objects, prefix=prefix)),
            Limits(stall_seconds=plan.stall_seconds),
            profile=output,
        )

    async def _latency_scenario(self, latency: int) -> None:
        plan, prefix = self.plan, f"{self.run_id}.l{latency}"
        await self.stack.set_latency(latency)
        load = Load(build_events(plan.events, plan.objects, prefix=prefix))
        limits = Limits(stall_seconds=plan.stall_seconds)
        regen = await self._measure(
            LATENCY,
            latency,
            REGEN_SYNC,
            self._regen_sync(prefix),
            load,
            limits,
        )
        await self._measure(
            LATENCY, latency, LEAN, lean_pipeline(self.stack, f"{prefix}.lean"), load, limits
        )
        naive_limits = Limits(time_box_seconds=plan.naive_seconds, stall_seconds=plan.stall_seconds)
        for system, consumers in ((NAIVE_PER_PARTITION, plan.partitions), (NAIVE_SINGLE, 1)):
            naive = naive_baseline(self.stack, f"{prefix}.{system}", consumers=consumers)
            await self._measure(LATENCY, latency, system, naive, load, naive_limits)
        await self._measure(
            LATENCY, latency, PIPE, broker_pipe(self.stack, f"{prefix}.pipe"), load, limits
        )
        caps = ", ".join(f"{upstream} {cap}" for upstream, cap in self.concurrency.items())
        limit = Row(
            LATENCY,
            latency,
            CONCURRENCY_LIMIT,
            f"concurrency limit C/L (C: {caps})",
            limit_events_per_second=concurrency_limit(load.events, self.concurrency, latency),
        )
        self._add(limit)
        # A burst of identical events per object is partly coalesced, so its maximum can pass
        # C/L; a stream spread over time is not, and C/L is then what saturates the upstream.
        maximum = min(regen.events_per_second or 0, limit.limit_events_per_second or math.inf)
        if latency == plan.half_rate_latency_ms and maximum:
            await self._half_rate(latency, maximum / 2)

    async def _half_rate(self, latency: int, rate: float) -> None:
        plan, prefix = self.plan, f"{self.run_id}.l{latency}.half"
        warm_up = math.ceil(rate * plan.half_rate_warm_up_seconds)
        count = warm_up + math.ceil(rate * plan.half_rate_seconds)
        load = Load(
            build_events(count, min(plan.objects, count), prefix=prefix),
            rate=rate,
            warm_up_events=warm_up,
        )
        await self._measure(
            HALF_RATE,
            latency,
            REGEN_SYNC,
            self._regen_sync(prefix),
            load,
            Limits(stall_seconds=plan.stall_seconds),
            label=f"regen-sync, open loop at {rate:,.0f} events/s for "
            f"{plan.half_rate_warm_up_seconds:g} + {plan.half_rate_seconds:g} s (latency of the "
            f"last {plan.half_rate_seconds:g} s)",
        )

    async def _coalescing(self, latency: int) -> None:
        plan = self.plan
        await self.stack.set_latency(latency)
        for coalesce, variant, time_box in (
            ("off", COALESCING_OFF, plan.uncoalesced_seconds),
            ("on", COALESCING_ON, None),
        ):
            prefix = f"{self.run_id}.coalesce-{coalesce}"
            load = Load(
                build_events(plan.coalescing_events, plan.coalescing_objects, prefix=prefix)
            )
            system = self._regen_sync(
                prefix, env={COALESCE_VARIABLE: "true" if coalesce == "on" else "false"}
            )
            await self._measure(
                COALESCING,
                latency,
                REGEN_SYNC,
                system,
                load,
                Limits(time_box_seconds=time_box, stall_seconds=plan.stall_seconds),
                label=f"regen-sync, coalescing {coalesce} ({plan.coalescing_objects:,} objects)",
                variant=variant,
            )

    async def _backlog(self, latency: int) -> None:
        plan, prefix = self.plan, f"{self.run_id}.backlog"
        await self.stack.set_latency(latency)
        load = Load(build_events(plan.backlog_events, plan.objects, prefix=prefix), preload=True)
        await self._measure(
            BACKLOG,
            latency,
            REGEN_SYNC,
            self._regen_sync(prefix),
            load,
            Limits(time_box_seconds=plan.backlog_seconds, stall_seconds=plan.stall_seconds),
            label=f"regen-sync, {plan.backlog_events:,} events waiting before it starts",
        )

    async def _measure(
        self,
        scenario: str,
        latency: int,
        system_id: str,
        system: SystemUnderTest,
        load: Load,
        limits: Limits,
        *,
        label: str | None = None,
        variant: str | None = None,
    ) -> Row:
        measurement = await measure(self.stack, system, load, limits)
        row = Row(scenario, latency, system_id, label or system.name, measurement, variant)
        row.notes.extend(_anomalies(measurement, limits))
        self._add(row)
        return row

    def _regen_sync(self, prefix: str, env: Mapping[str, str] | None = None) -> SystemUnderTest:
        return regen_sync(self.stack, f"{prefix}.regen", concurrency=self.concurrency, env=env)

    def _add(self, row: Row) -> None:
        self.rows.append(row)
        self._progress(row)


def effective_concurrency(plan: Plan) -> dict[Upstream, int]:
    return {
        upstream: plan.concurrency or default
        for upstream, default in production_concurrency().items()
    }


def concurrency_limit(
    events: list[BenchEvent], concurrency: Mapping[Upstream, int], latency_ms: int
) -> float | None:
    """Events/s if every upstream kept its C calls in flight, each taking L: the upstreams
    work in parallel, so the one with the most calls per slot sets the pace."""
    if latency_ms <= 0:
        return None
    calls = Counter(event.upstream for event in events)
    seconds = max(
        count * (latency_ms / 1000) / concurrency[upstream] for upstream, count in calls.items()
    )
    return len(events) / seconds


def _anomalies(measurement: Measurement, limits: Limits) -> list[str]:
    notes = []
    if measurement.time_boxed and limits.time_box_seconds is not None:
        notes.append(
            f"first {limits.time_box_seconds:g} s: "
            f"{measurement.results:,} of {measurement.events:,} events"
        )
    elif measurement.results < measurement.events:
        notes.append(f"INCOMPLETE: {measurement.results:,} of {measurement.events:,} results")
    if measurement.duplicates:
        notes.append(f"{measurement.duplicates:,} duplicate results")
    if measurement.failed:
        notes.append(f"{measurement.failed:,} failed")
    return notes
