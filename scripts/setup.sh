#!/usr/bin/env bash
# Prepares a fresh checkout: a virtualenv with the service and its dev tools, and the Tansu
# broker binary the demo, tests and benchmarks run against. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "regen-sync needs Python >= 3.11")'
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[dev,sandbox]"
.venv/bin/python scripts/fetch_tansu.py >/dev/null
bash scripts/install_system_tools.sh
