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
# `python -m regen_sync run` runs the event loop in the main thread; other threads (anyio's
# workers) are counted apart, since a worker waiting for work still shows as a sample.
_MAIN_THREAD_ROOT = "_run_module_as_main"
_SCAFFOLDING_SHARE = 0.99


class Profiler:
    """``py-spy record`` attached to a running process; stopped (and written) with SIGINT."""

    def __init__(self, pid: int, output: Path) -> None:
        self.output = output
        self._pid = pid
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        py_spy = Path(sys.executable).with_name("py-spy")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        # Why py-spy could not attach (ptrace not permitted, say) is only in its own output.
        with self.output.with_suffix(".py-spy.log").open("wb") as log:
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
                    "--output",
                    str(self.output),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
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


def summarise(raw: Path, top: int = 25) -> dict[str, Any]:
    """Shares of the event loop thread's samples per function: ``self`` where it was the
    running frame, ``total`` where it was anywhere on the stack (once per stack). Frames on
    (nearly) every stack, the loop's own scaffolding, are left out of ``total``."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = other_threads = 0
    # py-spy writes nothing when it could not attach (no ptrace permission, for one).
    text = raw.read_text(errors="replace") if raw.is_file() else ""
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_LINE_NUMBER.sub(")", frame) for frame in stack.split(";")]
        if not frames[0].startswith(_MAIN_THREAD_ROOT):
            other_threads += count
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": frame, "percent": round(100 * count / samples, 1)}
            for frame, count in counter.most_common()
            if count < _SCAFFOLDING_SHARE * samples
        ][:top]

    return {
        "samples": samples,
        "other_threads_samples": other_threads,
        "self": shares(own),
        "total": shares(total),
    }
