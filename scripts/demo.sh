#!/usr/bin/env bash
# Sets up, then runs the demo: broker + sandbox + service, one event of each type and a bad one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The local-broker tooling (devstack/) is run from the checkout, never installed.
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python scripts/demo.py "$@"
