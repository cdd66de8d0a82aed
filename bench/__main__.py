"""`python -m bench`: run the benchmark, print its table, write its JSON (docs/performance.md)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.profile import summarise
from bench.report import (
    SCHEMA_VERSION,
    Row,
    comparisons,
    comparisons_table,
    evaluate,
    markdown_table,
    targets_table,
    write_json,
)
from bench.runner import SMOKE, Plan, Runner, effective_concurrency
from bench.stack import Stack

DEFAULT_JSON = Path("bench/results/latest.json")
SKIPPABLE = ("half-rate", "coalescing", "backlog")


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure regen-sync against a naive FastStream consumer, a lean pipeline "
        "making the same calls, the broker's raw pipe and the concurrency limit, on a local "
        "Tansu broker and the upstream sandbox.",
    )
    parser.add_argument("--smoke", action="store_true", help="the smallest scenario (CI)")
    parser.add_argument(
        "--latencies", help="upstream latencies L in ms, comma-separated (default 0,50,250)"
    )
    parser.add_argument("--events", type=int, help="events per scenario (default 20000)")
    parser.add_argument("--objects", type=int, help="distinct business objects (default 2000)")
    parser.add_argument("--partitions", type=int, help="input topic partitions (default 6)")
    parser.add_argument(
        "--concurrency",
        type=int,
        help="regen-sync's C for every upstream (default: each upstream's production default)",
    )
    parser.add_argument(
        "--naive-seconds", type=float, help="time box of the naive baseline (default 20)"
    )
    parser.add_argument(
        "--half-rate-seconds", type=float, help="open-loop duration at half rate (default 20)"
    )
    parser.add_argument("--coalescing-events", type=int, help="default 20000")
    parser.add_argument("--coalescing-objects", type=int, help="default 1000")
    parser.add_argument(
        "--coalescing-latency", type=int, help="L of the coalescing scenario in ms (default 250)"
    )
    parser.add_argument("--backlog-events", type=int, help="default 100000")
    parser.add_argument(
        "--backlog-seconds", type=float, help="stop the backlog run after this (default 60)"
    )
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated scenarios to leave out: {', '.join(SKIPPABLE)}",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile regen-sync with py-spy in an extra run at the first latency",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument(
        "--logs", type=Path, help="directory for process logs (default: a temp dir)"
    )
    arguments = parser.parse_args(argv)
    unknown = set(filter(None, arguments.skip.split(","))) - set(SKIPPABLE)
    if unknown:
        parser.error(f"--skip: unknown scenario(s) {', '.join(sorted(unknown))}")
    return arguments


def build_plan(arguments: argparse.Namespace) -> Plan:
    plan = SMOKE if arguments.smoke else Plan()
    given: dict[str, Any] = {
        name: getattr(arguments, name)
        for name in (
            "events",
            "objects",
            "partitions",
            "concurrency",
            "naive_seconds",
            "half_rate_seconds",
            "coalescing_events",
            "coalescing_objects",
            "backlog_events",
            "backlog_seconds",
        )
        if getattr(arguments, name) is not None
    }
    if arguments.coalescing_latency is not None:
        given["coalescing_latency_ms"] = arguments.coalescing_latency
    if arguments.latencies:
        given["latencies_ms"] = tuple(int(ms) for ms in arguments.latencies.split(","))
    skipped = set(arguments.skip.split(","))
    for scenario, field in (
        ("half-rate", "half_rate_latency_ms"),
        ("coalescing", "coalescing_latency_ms"),
        ("backlog", "backlog_latency_ms"),
    ):
        if scenario in skipped:
            given[field] = None
    if arguments.profile:
        given["profile"] = arguments.json.with_suffix(".profile.txt")
    return dataclasses.replace(plan, **given)


def service_revision() -> str | None:
    """The commit measured, marked ``+changes`` when service/ differs from it."""
    git = ["git", "-C", str(Path(__file__).resolve().parent.parent)]
    try:
        commit = subprocess.run(  # noqa: S603 - fixed git commands
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(  # noqa: S603
            [*git, "status", "--porcelain", "--", "service"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout
    return f"{commit}+changes" if changed else commit


def print_row(row: Row) -> None:
    m = row.measurement
    figures = f"{row.events_per_second:,.1f} events/s" if row.events_per_second else "unbounded"
    if m is not None:
        figures += f", {m.results:,}/{m.events:,} results"
        p99 = m.percentile_ms(0.99)
        if p99 is not None:
            figures += f", p99 {p99:,.0f} ms"
    notes = "".join(f" — {note}" for note in row.notes)
    print(f"  L={row.latency_ms} ms {row.scenario:<10} {row.label}: {figures}{notes}", flush=True)


async def run(plan: Plan, logs: Path) -> tuple[list[Row], dict[str, Any] | None]:
    stack = Stack(logs, plan.partitions)
    await asyncio.to_thread(stack.start)
    try:
        runner = Runner(plan, stack, uuid.uuid4().hex[:8], print_row)
        rows = await runner.run()
        if plan.profile is None:
            return rows, None
        profiled = await runner.profile(plan.profile)
        print(
            f"  profiled run: {profiled.events_per_second or 0:,.1f} events/s with py-spy attached",
            flush=True,
        )
        return rows, {
            "latency_ms": plan.latencies_ms[0],
            "events_per_second": round(profiled.events_per_second or 0, 1),
            "raw_stacks": str(plan.profile),
            **summarise(plan.profile),
        }
    finally:
        await stack.close()
        await asyncio.to_thread(stack.stop)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    plan = build_plan(arguments)
    logs = arguments.logs or Path(tempfile.mkdtemp(prefix="regen-sync-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    started_at, started = dt.datetime.now(dt.UTC), time.monotonic()
    concurrency = {str(upstream): cap for upstream, cap in effective_concurrency(plan).items()}
    print(
        f"regen-sync benchmark: {plan.events:,} events over {plan.objects:,} objects, "
        f"{plan.partitions} partitions, C = {concurrency}, L = "
        f"{', '.join(map(str, plan.latencies_ms))} ms; logs in {logs}",
        flush=True,
    )
    rows, profile = asyncio.run(run(plan, logs))
    targets = evaluate(rows)
    compared = comparisons(rows)
    document = {
        "schema": SCHEMA_VERSION,
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "started_at": started_at.isoformat(timespec="seconds"),
        "revision": service_revision(),
        "duration_seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "plan": {
            field.name: str(value) if isinstance(value, Path) else value
            for field in dataclasses.fields(plan)
            for value in [getattr(plan, field.name)]
        },
        "concurrency": concurrency,
        "rows": [row.to_json() for row in rows],
        "targets": [target.to_json() for target in targets],
        "comparisons": compared,
        "profile": profile,
        "logs": str(logs),
    }
    write_json(arguments.json, document)
    print()
    print(markdown_table(rows, targets))
    print()
    print(targets_table(targets))
    print()
    print(comparisons_table(compared))
    if profile is not None:
        print(
            f"\nprofile: {profile['samples']} samples of the event loop thread "
            f"({profile['other_threads_samples']} of other threads), raw stacks in {plan.profile}"
        )
        for kind in ("self", "total"):
            print(f"  share of samples, {kind}:")
            for entry in profile[kind]:
                print(f"  {entry['percent']:5.1f}%  {entry['function']}")
    print(f"\nresults written to {arguments.json} in {document['duration_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
