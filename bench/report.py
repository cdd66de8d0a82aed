"""The benchmark's figures: rows per system and scenario, the issue's targets as ratios of
figures from the same run, a Markdown table for people and a JSON document for tools."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.measure import Measurement

SCHEMA_VERSION = 1

# Scenario kinds.
LATENCY = "latency"
HALF_RATE = "half-rate"
COALESCING = "coalescing"
BACKLOG = "backlog"

# Systems.
REGEN_SYNC = "regen-sync"
NAIVE_PER_PARTITION = "naive-per-partition"
NAIVE_SINGLE = "naive-single"
LEAN = "lean"
PIPE = "broker-pipe"
CONCURRENCY_LIMIT = "concurrency-limit"

COALESCING_ON = "coalescing-on"
COALESCING_OFF = "coalescing-off"

RSS_LIMIT_MB = 200.0


@dataclass
class Row:
    scenario: str
    latency_ms: int
    system: str
    label: str
    """How the row names its system and scenario variant in the table."""
    measurement: Measurement | None = None
    variant: str | None = None
    """What sets this row apart from others of the same system and scenario."""
    limit_events_per_second: float | None = None
    """For a computed limit (no measurement): events/s, None when unbounded."""
    notes: list[str] = field(default_factory=list)

    @property
    def events_per_second(self) -> float | None:
        if self.measurement is None:
            return self.limit_events_per_second
        return self.measurement.events_per_second

    @property
    def complete(self) -> bool:
        """Every event got a result, or the run was cut short on purpose."""
        m = self.measurement
        return m is None or m.time_boxed or m.results == m.events

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "scenario": self.scenario,
            "latency_ms": self.latency_ms,
            "system": self.system,
            "variant": self.variant,
            "label": self.label,
            "events_per_second": _round(self.events_per_second),
            "notes": self.notes,
        }
        m = self.measurement
        if m is None:
            return document
        return document | {
            "events": m.events,
            "results": m.results,
            "failed": m.failed,
            "duplicates": m.duplicates,
            "complete": self.complete,
            "time_boxed": m.time_boxed,
            "elapsed_seconds": _round(m.elapsed_seconds),
            "p50_ms": _round(m.percentile_ms(0.50)),
            "p99_ms": _round(m.percentile_ms(0.99)),
            "peak_rss_mb": _round(m.peak_rss_mb),
            "rss_samples_mb": m.rss_samples_mb,
            "cpu_seconds": m.cpu_seconds,
            "cpu_ms_per_event": _round(m.cpu_ms_per_event, 2),
            "upstream_calls": m.upstream_calls,
            "upstream_calls_per_event": _round(
                m.upstream_calls / m.events if m.upstream_calls is not None else None, 3
            ),
            "log": m.log_path,
        }


@dataclass
class Target:
    name: str
    description: str
    required: float
    at_most: bool
    """The measured value must be at most (else at least) the required one."""
    measured: float | None = None
    row: Row | None = None
    """The run the target is about."""

    @property
    def status(self) -> str:
        if self.row is None:
            return "not measured"
        if self.measured is None:
            return "not met"  # the run happened but yielded no figure (no results)
        within = self.measured <= self.required if self.at_most else self.measured >= self.required
        return "met" if within and self.row.complete else "not met"

    @property
    def summary(self) -> str:
        if self.measured is None:
            return f"{self.name}: {self.status}"
        sign = "≤" if self.at_most else "≥"
        return f"{self.name} {self.measured:.3g} (needs {sign} {self.required:g}): {self.status}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "measured": _round(self.measured, 3),
            "required": self.required,
            "comparison": "<=" if self.at_most else ">=",
            "status": self.status,
        }


def _find(rows: list[Row], scenario: str, system: str, latency_ms: int | None = None) -> Row | None:
    return next(
        (
            row
            for row in rows
            if row.scenario == scenario
            and row.system == system
            and latency_ms in (None, row.latency_ms)
        ),
        None,
    )


def evaluate(rows: list[Row]) -> list[Target]:
    def find(scenario: str, system: str, latency_ms: int | None = None) -> Row | None:
        return _find(rows, scenario, system, latency_ms)

    at_50 = find(LATENCY, REGEN_SYNC, 50)
    lean_50 = find(LATENCY, LEAN, 50)
    naive_50 = find(LATENCY, NAIVE_PER_PARTITION, 50)
    at_0, lean_0 = find(LATENCY, REGEN_SYNC, 0), find(LATENCY, LEAN, 0)
    half = find(HALF_RATE, REGEN_SYNC)
    backlog = find(BACKLOG, REGEN_SYNC)
    coalesced = next(
        (
            r
            for r in rows
            if r.scenario == COALESCING and r.system == REGEN_SYNC and "on" in r.label
        ),
        None,
    )

    limit_50 = _eps(find(LATENCY, CONCURRENCY_LIMIT, 50))
    return [
        Target(
            "throughput at L=50 ms / min(C/L, lean)",
            "regen-sync's events/s at L = 50 ms over the lower of the concurrency limit C/L "
            "and the lean pipeline measured in the same run",
            0.8,
            at_most=False,
            measured=_ratio(at_50, min(limit_50 or math.inf, _eps(lean_50) or math.inf)),
            row=at_50,
        ),
        Target(
            "throughput at L=50 ms / naive",
            "regen-sync's events/s at L = 50 ms over the naive baseline's with one sequential "
            "consumer per partition",
            10.0,
            at_most=False,
            measured=_ratio(at_50, _eps(naive_50)),
            row=at_50,
        ),
        Target(
            "throughput at L=0 / lean",
            "regen-sync's events/s at L = 0 over the lean pipeline's (the same upstream calls "
            "and results, nothing else)",
            0.5,
            at_most=False,
            measured=_ratio(at_0, _eps(lean_0)),
            row=at_0,
        ),
        Target(
            "p99 at half rate (ms)",
            "p99 end-to-end latency, events sent at half regen-sync's maximum rate at this "
            "latency; must be at most L + 100 ms",
            float(half.latency_ms + 100) if half is not None else 150.0,
            at_most=True,
            measured=half.measurement.percentile_ms(0.99) if half and half.measurement else None,
            row=half,
        ),
        Target(
            "peak RSS with a backlog (MB)",
            "regen-sync's peak resident memory (VmHWM) while working through a backlog",
            RSS_LIMIT_MB,
            at_most=True,
            measured=backlog.measurement.peak_rss_mb if backlog and backlog.measurement else None,
            row=backlog,
        ),
        Target(
            "upstream calls / events, coalescing on",
            "upstream calls per event for a burst of several events per object, coalescing on",
            0.25,
            at_most=True,
            measured=_calls_per_event(coalesced),
            row=coalesced,
        ),
    ]


def comparisons(rows: list[Row]) -> dict[str, float | None]:
    """Figures beside the targets: regen-sync against the lean pipeline and the broker pipe
    at each latency measured, and what an event costs each in CPU."""
    figures: dict[str, float | None] = {}
    for latency in sorted({row.latency_ms for row in rows if row.scenario == LATENCY}):
        regen = _find(rows, LATENCY, REGEN_SYNC, latency)
        for system in (LEAN, PIPE):
            figures[f"regen-sync / {system} at L={latency} ms"] = _round(
                _ratio(regen, _eps(_find(rows, LATENCY, system, latency))), 3
            )
        for system in (REGEN_SYNC, LEAN):
            row = _find(rows, LATENCY, system, latency)
            cpu = row.measurement.cpu_ms_per_event if row and row.measurement else None
            figures[f"{system} CPU ms/event at L={latency} ms"] = _round(cpu, 2)
    return figures


def comparisons_table(figures: dict[str, float | None]) -> str:
    lines = ["| comparison | value |", "|---|--:|"]
    lines += [f"| {name} | {_number(value, 3)} |" for name, value in figures.items()]
    return "\n".join(lines)


def _eps(row: Row | None) -> float | None:
    return row.events_per_second if row is not None else None


def _ratio(row: Row | None, denominator: float | None) -> float | None:
    numerator = _eps(row)
    if numerator is None or not denominator or math.isinf(denominator):
        return None
    return numerator / denominator


def _calls_per_event(row: Row | None) -> float | None:
    if row is None or row.measurement is None or row.measurement.upstream_calls is None:
        return None
    return row.measurement.upstream_calls / row.measurement.events


def markdown_table(rows: Iterable[Row], targets: list[Target]) -> str:
    by_row: dict[int, list[Target]] = {}
    for target in targets:
        if target.row is not None and target.measured is not None:
            by_row.setdefault(id(target.row), []).append(target)
    lines = [
        "| scenario | system | events/s | p50 ms | p99 ms | peak RSS MB | CPU ms/event "
        "| upstream calls | target |",
        "|---|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in rows:
        m = row.measurement
        latency_known = m is not None and row.scenario != BACKLOG
        cells = [
            _scenario_label(row),
            row.label + ("".join(f" — {note}" for note in row.notes)),
            _number(row.events_per_second, 1),
            _number(m.percentile_ms(0.50), 0) if latency_known and m else "—",
            _number(m.percentile_ms(0.99), 0) if latency_known and m else "—",
            _number(m.peak_rss_mb, 0) if m else "—",
            _number(m.cpu_ms_per_event, 2) if m else "—",
            str(m.upstream_calls) if m and m.upstream_calls is not None else "—",
            "; ".join(t.summary for t in by_row.get(id(row), [])),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(targets: list[Target]) -> str:
    lines = ["| target | measured | required | status |", "|---|--:|--:|---|"]
    for target in targets:
        sign = "≤" if target.at_most else "≥"
        measured = _number(target.measured, 3 if target.measured and target.measured < 10 else 1)
        lines.append(
            f"| {target.name} | {measured} | {sign} {target.required:g} | {target.status} |"
        )
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _scenario_label(row: Row) -> str:
    return {
        LATENCY: f"L = {row.latency_ms} ms",
        HALF_RATE: f"L = {row.latency_ms} ms, half rate",
        COALESCING: f"coalescing, L = {row.latency_ms} ms",
        BACKLOG: f"backlog, L = {row.latency_ms} ms",
    }[row.scenario]


def _number(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)
