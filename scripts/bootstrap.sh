#!/usr/bin/env bash
# Create (once) the project's virtual environment in .venv and install riskstream into it.
#   scripts/bootstrap.sh          runtime dependencies
#   scripts/bootstrap.sh dev      plus the test and development tools
# riskstream's import packages have generic names (stream, detectors, sinks), so it always gets its own venv.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RISKSTREAM_VENV:-$root/.venv}"
extra="${1:-}"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  for cand in python3.13 python3.12 python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      py="$cand"; break
    fi
  done
fi
[ -n "$py" ] || { echo "bootstrap: Python >= 3.11 is required" >&2; exit 2; }
if [ ! -x "$venv/bin/python" ]; then
  echo "bootstrap: creating $venv with $($py --version)" >&2
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
fi
stamp="$venv/.riskstream-installed${extra:+-$extra}"
# Reinstall when the dependencies changed or the compiled core's sources did (the editable install builds
# stream/_core with cargo; Python files are picked up without a reinstall).
stale=""
if [ -f "$stamp" ] && [ -n "$(find "$root/core" \( -name '*.rs' -o -name 'Cargo.*' \) -newer "$stamp" -print -quit 2>/dev/null)" ]; then
  stale=1
fi
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ] || [ -n "$stale" ] || ! ls "$root"/stream/_core*.so >/dev/null 2>&1; then
  echo "bootstrap: installing riskstream${extra:+[$extra]} into $venv" >&2
  log="$venv/pip-install.log"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root${extra:+[$extra]}" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "bootstrap: pip install failed (full log: $log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
