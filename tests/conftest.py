"""Fixtures shared by every test directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import TansuBroker
from devstack.broker import BINARY_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent


def _tansu_binary() -> Path:
    if from_env := os.environ.get(BINARY_ENV):
        return Path(from_env)
    # The script is a no-op once the binary is cached, so a fresh checkout just works.
    fetch = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "scripts" / "fetch_tansu.py"),
            "--dest",
            str(REPO_ROOT / ".cache" / "tansu"),
        ],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if fetch.returncode != 0:
        pytest.fail(
            "scripts/fetch_tansu.py could not provide the Tansu binary (its stderr is above)",
            pytrace=False,
        )
    return Path(fetch.stdout.strip())


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """One Tansu broker (in-memory storage) for the whole session; its log is in the
    session's tmp dir under ``tansu*/tansu.log``."""
    log_path = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with TansuBroker(_tansu_binary(), log_path=log_path) as broker:
        yield broker
