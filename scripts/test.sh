#!/usr/bin/env bash
# README command 2: install everything, start the services the tests need (a real Apache Kafka broker in KRaft
# mode and PostgreSQL, both on 127.0.0.1, via scripts/services), then run the whole test suite with pytest.
# Extra arguments go to pytest (e.g. -k kafka -x).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/bootstrap.sh dev
if [ -z "${RISKSTREAM_KAFKA_BOOTSTRAP:-}" ] || [ -z "${RISKSTREAM_DATABASE_URL:-}" ]; then
  scripts/services up
  eval "$(scripts/services env)"
fi
scripts/services browser  # Chromium + chromedriver for the console's browser tests (Debian packages)
export RISKSTREAM_KAFKA_BOOTSTRAP RISKSTREAM_DATABASE_URL
# Three pytest-xdist workers by default, one test file at a time each (fixtures are per file, and every test uses
# its own topics, schemas and ports). The suite mostly waits on Kafka (rebalances, session timeouts, restarts), so
# a third worker on a 2-core machine shortens it: the sum of the test times is ~21 min, two workers took 10.7.
# RISKSTREAM_TEST_WORKERS=N sets the count; 0 runs in this process, as does an explicit -n/-p.
workers="${RISKSTREAM_TEST_WORKERS:-3}"
parallel=()
if [ "$workers" != "0" ] && [[ " $* " != *" -n "* ]] && [[ " $* " != *" -p no:xdist "* ]]; then
  parallel=(-n "$workers" --dist loadfile)
fi
exec "${RISKSTREAM_VENV:-$root/.venv}/bin/python" -m pytest "${parallel[@]}" "$@"
