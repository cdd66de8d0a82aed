#!/usr/bin/env bash
# Sets up, then runs the throughput benchmark (docs/performance.md): its own Tansu broker,
# upstream sandbox and service processes on 127.0.0.1. `--smoke` for the smallest scenario,
# `--help` for the options; the table is printed and the figures written as JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m bench "$@"
