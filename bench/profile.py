"""Sampling the service's hot path with py-spy while it works, and summarising the samples."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# py-spy's raw format: "frame;frame;...;leaf count", each frame "function (file:line)".
_LINE_NUMBER = re.compile(r":\d+\)$")


class Profiler:
    """``py-spy record`` attached to a running process; stopped (and written) with SIGINT."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self._pid = pid
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(  # noqa: S603 - a fixed command, no shell
            [
                str(py_spy),
                "record",
                "--pid",
                str(self._pid),
                "--format",
                "raw",
                "--rate",
                "100",
                # Sampling without pausing the service keeps its throughput close to an
                # unprofiled run, at the cost of an occasional torn stack.
                "--nonblocking",
                "--output",
                str(self.output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def summarise(raw: Path, top: int = 15) -> dict[str, Any]:
    """Share of samples per function: ``self`` where it was the running frame, ``total``
    where it was anywhere on the stack (each stack counted once per function)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": frame, "percent": round(100 * count / samples, 1)}
            for frame, count in counter.most_common(top)
        ]

    return (
        {"samples": samples, "self": shares(own), "total": shares(total)}
        if samples
        else {
            "samples": 0,
            "self": [],
            "total": [],
        }
    )
