#!/usr/bin/env bash
# Sets up, then runs the whole test suite (unit and integration, real broker and sandbox).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
