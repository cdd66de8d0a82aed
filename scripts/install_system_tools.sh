#!/usr/bin/env bash
# Installs the system tools the monitoring tests need: promtool (rule checks and unit tests) and
# the Prometheus server (the end-to-end query test), both from Debian's `prometheus` package.
# Does nothing when both are already on PATH. The package's own service is never started: the
# tests run their own Prometheus on a free port and stop it by PID.
set -euo pipefail

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_system_tools.sh: need promtool and prometheus on PATH (Debian: apt-get install prometheus)" >&2
  exit 1
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi

# invoke-rc.d and deb-systemd-invoke ask policy-rc.d before starting a service; 101 means
# "not allowed". A policy already in place (e.g. in containers) is left as it is.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod 755 "$policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Keep it from starting at the next boot as well.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  "${as_root[@]}" systemctl disable --quiet prometheus.service
fi

promtool --version >/dev/null
prometheus --version >/dev/null
