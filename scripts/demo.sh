#!/usr/bin/env bash
# README command 1: install riskstream into .venv and run the demo on embedded defaults (no server needed):
# simulate a realistic stream with attacks, replay it, print metrics and the top alerts with their reasons.
# Extra arguments go to `riskstream demo` (e.g. --events 50000).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/bootstrap.sh"
exec "${RISKSTREAM_VENV:-$root/.venv}/bin/riskstream" demo "$@"
