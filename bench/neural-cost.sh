#!/usr/bin/env bash
# The autoencoder's cost in the engine: ULB replays, defaults (compiled detection), defaults on the Python engine,
# and defaults + the autoencoder (features compiled, detection in Python), interleaved, twice; wall and CPU seconds
# per run with the report's events/s. Results: bench/results/neural_cost.jsonl (docs/detectors.md, "Neural detectors").
#   bash bench/neural-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=$(python -c "from stream.eval.data import shared_data_dir; print(shared_data_dir())")
out=bench/results/neural_cost.jsonl
tmp=$(mktemp -d)
printf '[engine]\ncore = "python"\n' > "$tmp/python.toml"
: > "$out"
for round in $(seq "${1:-2}"); do
  for cfg in default python bench/panel/autoencoder.toml; do
    case $cfg in default) c=();; python) c=(-c "$tmp/python.toml");; *) c=(-c "$cfg");; esac
    /usr/bin/time -f '%e %U %S' -o "$tmp/time" riskstream replay "$DATA/creditcard_ulb/creditcard.csv.gz" --type order \
      --map ts=Time,amount=Amount,label=Class --set user_id=card,merchant_id=unknown "${c[@]}" -q \
      --report "$tmp/report.json" 2>/dev/null
    python - "$cfg" "$round" "$tmp/time" "$tmp/report.json" "$(cat /proc/loadavg)" >> "$out" <<'PY'
import json, sys
cfg, rnd, tfile, rfile, load = sys.argv[1:]
wall, user, sys_ = map(float, open(tfile).read().split()[-3:])
r = json.load(open(rfile))
print(json.dumps({"config": cfg, "round": int(rnd), "events": r["events"], "events_per_second": r["events_per_second"],
                  "wall_s": wall, "cpu_s": round(user + sys_, 2), "roc_auc": r["roc_auc"], "config_hash": r["config_hash"],
                  "loadavg": load}))
PY
    tail -n 1 "$out"
  done
done
