"""``replay`` of one JSONL file: the raw-lines path (``process_raw``, issue 12) beside the event path of the same
compiled engine and the Python engine, in one run (same file, same outputs: alerts counted, report compared).

    scripts/build-core.sh --release
    python bench/replay_jsonl_bench.py --events 50000 --seed 7 --out bench/results/replay_jsonl.json
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from stream.config import load_settings
from stream.events import encode
from stream.replay import replay
from stream.sim import SimConfig, simulate
from stream.sources import FileSource


class _Events:
    """The file through the event path (any source but a single-JSONL FileSource takes it)."""

    def __init__(self, src: FileSource) -> None:
        self.src = src

    def __iter__(self):
        return iter(self.src)

    def close(self) -> None:
        self.src.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "stream.jsonl"
        path.write_bytes(b"\n".join(encode(e) for e in simulate(SimConfig(events=args.events, seed=args.seed))))
        runs: dict[str, list[float]] = {"compiled, raw lines": [], "compiled, events": [], "python engine": []}
        reports = {}
        for _ in range(args.repeat):
            for name in runs:
                settings = load_settings(None, env={}, overrides={
                    "engine.core": "python" if name == "python engine" else "compiled"})
                src = FileSource([path], batch_size=int(settings.engine["batch_size"]))
                gc.collect()
                t0 = time.perf_counter()
                r = replay(_Events(src) if name == "compiled, events" else src, settings)
                runs[name].append(time.perf_counter() - t0)
                reports[name] = {k: r[k] for k in ("events", "alerts", "roc_auc", "pr_auc", "invalid")}
    n = args.events
    out = {"input": f"simulate --events {n} --seed {args.seed} as one JSONL file",
           "events_per_second": {k: round(n / min(v), 1) for k, v in runs.items()},
           "seconds": {k: [round(x, 3) for x in v] for k, v in runs.items()}, "reports": reports}
    raw, ev = out["events_per_second"]["compiled, raw lines"], out["events_per_second"]["compiled, events"]
    out["raw_over_events"] = round(raw / ev, 3)
    out["raw_over_python"] = round(raw / out["events_per_second"]["python engine"], 3)
    assert reports["compiled, raw lines"] == reports["compiled, events"], reports
    print(json.dumps(out, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
