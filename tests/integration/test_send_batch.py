"""`regen-sync send --csv` (a batch: one event per row, a report of each row's outcome) and
`regen-sync redrive --csv` (the failed rows of that report), as real processes against the
real broker and the sandbox."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from harness import kafka_only, regen_sync, unique
from stack import PARTITIONS, Stack

from devstack import TansuBroker

MB = 1024 * 1024


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_report(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def default_batch(path: Path) -> str:
    return "batch-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]


async def end_offsets(broker: TansuBroker, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, group_id=None)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, number) for number in range(PARTITIONS)]
        ends = await consumer.end_offsets(partitions)
        return {partition.partition: offset for partition, offset in ends.items()}
    finally:
        await consumer.stop()


async def test_a_batch_report_matches_what_the_sandbox_did_row_by_row(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    stack = await make_stack("send-batch")
    prefix = unique("J")
    # The sandbox answers 404 for journals named missing-*: not_found, dead-lettered.
    journals = [f"missing-{prefix}-{n}" if n % 7 == 0 else f"{prefix}-{n}" for n in range(1, 201)]
    sheet = write_csv(tmp_path / "journals.csv", ["journalId"], [[j] for j in journals])
    report = tmp_path / "report.csv"

    run = await regen_sync(
        "send",
        "--type",
        "journal.fixed",
        "--csv",
        str(sheet),
        "--wait",
        "--report",
        str(report),
        env=kafka_only(stack.service.env),
        timeout=120,
    )

    assert run.returncode == 1, run.stdout + run.stderr
    batch = default_batch(sheet)
    assert f"sent 200 of 200 rows of {sheet} as batch {batch} " in run.stdout
    assert "results: 172 succeeded, 28 failed (28 dead-lettered), 0 without a result" in run.stdout
    assert f"failed: row 7 ({batch}-7): not_found: " in run.stdout
    assert "and 18 more failed rows" in run.stdout
    assert run.stdout.count("\nsent ") + run.stdout.startswith("sent ") == 1, "a summary line"
    rows = read_report(report)
    assert [row["row"] for row in rows] == [str(n) for n in range(1, 201)]
    results = await stack.watcher.wait_for([f"{batch}-{n}" for n in range(1, 201)])
    for n, (row, journal) in enumerate(zip(rows, journals, strict=True), 1):
        event_id = f"{batch}-{n}"
        result = results[event_id].json()
        assert row["eventId"] == event_id
        if n % 7 == 0:
            assert result["type"] == "regeneration.failed"
            expected = {
                "outcome": "failed",
                "reason": "not_found",
                "message": result["data"]["message"],
                "upstreamIds": "",
                "deadLettered": "yes",
            }
        else:
            assert result["type"] == "regeneration.succeeded"
            expected = {
                "outcome": "succeeded",
                "reason": "",
                "message": "",
                "upstreamIds": journal,
                "deadLettered": "no",
            }
        assert row == row | expected | {"attempts": "1"}, (n, row)
    dead_letters = await stack.watcher.wait_for_dead_letters(28, lambda record: True)
    assert sorted(record.json()["id"] for record in dead_letters) == sorted(
        f"{batch}-{n}" for n in range(7, 201, 7)
    )
    calls = await stack.sandbox.requests("journal", match=prefix)
    assert len(calls) == 200
    assert sum(call["status"] == 404 for call in calls) == 28


async def test_one_bad_row_sends_nothing_and_names_its_line_and_column(
    make_stack: Callable[..., Awaitable[Stack]], kafka_broker: TansuBroker, tmp_path: Path
) -> None:
    stack = await make_stack("send-batch-bad", start=False)
    sheet = write_csv(
        tmp_path / "journals.csv",
        ["journalId"],
        [["BJO-1"], ["not a journal id!"], ["BJO-3"]],
    )
    before = await end_offsets(kafka_broker, stack.topics.input)

    run = await regen_sync(
        "send", "--type", "journal.fixed", "--csv", str(sheet), env=kafka_only(stack.service.env)
    )

    assert run.returncode == 2, run.stdout + run.stderr
    assert f"{sheet} line 3 (row 2), column journalId: String should match pattern" in run.stderr
    assert "1 invalid row of 3, nothing sent" in run.stderr
    assert run.stdout == ""
    assert await end_offsets(kafka_broker, stack.topics.input) == before


async def test_skipped_rows_and_rows_without_a_result_are_in_the_report(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    # No service: nothing answers, so every row sent ends without a result.
    stack = await make_stack("send-batch-skip", start=False)
    lines = ['{"journalId": "BJO-1"}', '{"journalId": "BJO 2"}', "", '{"journalId": "BJO-3"}']
    path = tmp_path / "journals.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = tmp_path / "report.csv"

    run = await regen_sync(
        "send",
        "--type",
        "journal.fixed",
        "--jsonl",
        str(path),
        "--skip-invalid",
        "--batch",
        "skip-test",
        "--wait",
        "--timeout",
        "2",
        "--report",
        str(report),
        env=kafka_only(stack.service.env),
    )

    assert run.returncode == 1, run.stdout + run.stderr
    assert f"{path} line 2 (row 2), column journalId: String should match" in run.stderr
    assert "sent 2 of 3 rows" in run.stdout
    assert "skipped 1 invalid row" in run.stdout
    assert "results: 0 succeeded, 0 failed (0 dead-lettered), 2 without a result" in run.stdout
    assert [
        (row["eventId"], row["outcome"], row["message"][:30]) for row in read_report(report)
    ] == [
        ("skip-test-1", "no_result", "no result within 2 s of the la"),
        ("skip-test-2", "invalid", "column journalId: String shoul"),
        ("skip-test-3", "no_result", "no result within 2 s of the la"),
    ]


async def test_the_same_file_sent_twice_has_the_same_ids_and_idempotency_keys(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    stack = await make_stack("send-batch-twice")
    documents = [unique("INV") for _ in range(5)]
    sheet = write_csv(
        tmp_path / "documents.csv",
        ["documentType", "documentNumber", "onlyReSend"],
        [["Invoice", document, "FALSE"] for document in documents],
    )
    env = kafka_only(stack.service.env)
    reports = []
    for attempt in ("first", "second"):
        report = tmp_path / f"{attempt}.csv"
        run = await regen_sync(
            "send",
            "--type",
            "billing.document.fixed",
            "--csv",
            str(sheet),
            "--wait",
            "--report",
            str(report),
            env=env,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        reports.append(read_report(report))

    first, second = reports
    assert [row["eventId"] for row in first] == [row["eventId"] for row in second]
    assert [row["eventId"] for row in first] == [f"{default_batch(sheet)}-{n}" for n in range(1, 6)]
    assert {row["outcome"] for row in first + second} == {"succeeded"}
    # The same regenerated ids: the second call was answered from Zuora's store.
    assert [row["upstreamIds"] for row in first] == [row["upstreamIds"] for row in second]
    for document in documents:
        calls = await stack.sandbox.requests("billing", match=document)
        assert len(calls) == 2, document
        keys = {call["headers"]["idempotency-key"] for call in calls}
        assert len(keys) == 1, calls
        assert [call["replayed"] for call in calls] == [False, True]


async def test_redrive_csv_redrives_exactly_the_failed_rows_of_a_report(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path
) -> None:
    stack = await make_stack("send-batch-redrive")
    journals = [unique(f"BJO-{n}") for n in range(1, 11)]
    failing = {3, 7}
    for n in failing:
        await stack.sandbox.fault(
            operation="journal", kind="status", status=404, times=1, match=journals[n - 1]
        )
    sheet = write_csv(tmp_path / "journals.csv", ["journalId"], [[j] for j in journals])
    report = tmp_path / "report.csv"
    env = kafka_only(stack.service.env)
    run = await regen_sync(
        "send",
        "--type",
        "journal.fixed",
        "--csv",
        str(sheet),
        "--batch",
        "fix-2026-11-21",
        "--wait",
        "--report",
        str(report),
        env=env,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    outcomes = {int(row["row"]): row["outcome"] for row in read_report(report)}
    assert {n for n, outcome in outcomes.items() if outcome == "failed"} == failing
    assert set(outcomes.values()) == {"succeeded", "failed"}

    redrive = await regen_sync("redrive", "--csv", str(report), env=env)

    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert "selected 2, sent 2" in redrive.stdout
    ids = [f"fix-2026-11-21-{n}" for n in range(1, 11)]
    redriven = [f"fix-2026-11-21-{n}" for n in sorted(failing)]

    def second_results() -> bool:
        return all(len(stack.watcher.results[event_id]) == 2 for event_id in redriven)

    async with asyncio.timeout(30):
        while not second_results():  # noqa: ASYNC110 - the watcher has no per-count wait
            await asyncio.sleep(0.1)
    for event_id in redriven:
        again = stack.watcher.results[event_id][1].json()
        assert again["type"] == "regeneration.succeeded", again
    for n, journal in enumerate(journals, 1):
        calls = await stack.sandbox.requests("journal", match=journal)
        assert len(calls) == (2 if n in failing else 1), (n, calls)
        if n not in failing:
            assert len(stack.watcher.results[ids[n - 1]]) == 1


# Runs the command and writes its peak RSS. A process's ru_maxrss starts from the peak of the
# memory it was forked from (Linux keeps the pre-exec high-water mark), so the command must be
# forked by a small process, not by pytest: that is what this launcher is for.
LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss * 1024))  # kilobytes on Linux
sys.exit(child.returncode)
"""


def _run_measured(arguments: list[str], env: dict[str, str], log: Path) -> tuple[int, float, int]:
    """(exit status, seconds, peak RSS in bytes) of `regen-sync <arguments>`."""
    base = {name: value for name, value in os.environ.items() if not name.startswith("REGEN_")}
    peak = log.with_suffix(".rss")
    started = time.monotonic()
    with log.open("wb") as output:
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                LAUNCHER,
                str(peak),
                sys.executable,
                "-m",
                "regen_sync",
                *arguments,
            ],
            env=base | env,
            stdout=output,
            stderr=subprocess.STDOUT,
            check=False,
            timeout=120,
        )
    return run.returncode, time.monotonic() - started, int(peak.read_text())


async def test_a_100k_row_file_is_streamed_with_bounded_memory(
    make_stack: Callable[..., Awaitable[Stack]], tmp_path: Path, figures: dict[str, object]
) -> None:
    stack = await make_stack("send-batch-large", start=False)
    env = kafka_only(stack.service.env)
    measured = {}
    for rows in (1_000, 100_000):
        sheet = tmp_path / f"{rows}.csv"
        with sheet.open("w", encoding="utf-8") as file:
            file.write("journalId\n")
            file.writelines(f"BJO-{n:06d}\n" for n in range(1, rows + 1))
        log = tmp_path / f"{rows}.log"
        arguments = ["send", "--type", "journal.fixed", "--csv", str(sheet)]

        status, seconds, peak = await asyncio.to_thread(_run_measured, arguments, env, log)

        output = log.read_text()
        assert status == 0, output
        assert f"sent {rows} of {rows} rows of {sheet} " in output
        measured[rows] = (seconds, peak)
        figures[f"{rows} rows"] = {
            "seconds": round(seconds, 1),
            "rows_per_s": round(rows / seconds),
            "peak_rss_mb": round(peak / MB, 1),
        }
        rate, megabytes = rows / seconds, peak / MB
        print(
            f"send --csv {rows} rows: {seconds:.1f} s, {rate:.0f} rows/s, "
            f"peak RSS {megabytes:.1f} MB"
        )
    (_, small), (_, large) = measured[1_000], measured[100_000]
    assert large - small < 30 * MB, f"peak RSS {small / MB:.1f} MB -> {large / MB:.1f} MB"
