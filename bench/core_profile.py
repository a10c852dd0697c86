"""Where the compiled engine's time goes, by stage: `perf` samples of `CompiledEngine.process_raw` alone.

    python bench/core_profile.py --events 50000 --out bench/results/core_profile.json

A child process simulates the stream (seed 7), encodes it as JSON records and times `process_raw` over them once
in batches of ``--batch`` (the µs an event the table's column is a share of). Then `perf record --call-graph dwarf`
attaches to it for ``--rounds`` more passes, each with a fresh engine, so set-up is not sampled. Each sample
goes to the innermost frame of its call stack that names a stage (`STAGES`, first match from the innermost
frame outwards; inlined frames count, so a `memmove` inside the calibrator's insert is the calibrator's); a
sample with no engine frame is Python's (alerts with their reasons, the outcome arrays, the loop).

Needs `perf` (linux-perf) with permission to attach (root, or `kernel.perf_event_paranoid` <= 1) and the core
built with `--release`. The table in `bench/README.md` ("The stage profile, now from a script") is this
script's output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (stage, substrings of a frame's symbol), tried in this order on each frame from the innermost outwards.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("HST (scoring, learning, the reference swap)", ("HalfSpaceTrees", "detectors::hst::")),
    ("the tail calibrators", ("TailCalibrator", "detectors::calibration::")),
    ("the z-score (ring writes, the refresh's medians, scoring)", ("RobustZScore", "detectors::zscore::")),
    ("coldstart", ("ColdStart", "detectors::coldstart::")),
    ("adaptive weights' pending evidence", ("WeightAdapter", "detectors::adaptive::")),
    ("rules and priors", ("detectors::rules::", "detectors::priors::", "Priors")),
    ("the ensemble's sums and decision", ("Ensemble::process",)),
    ("window bucket rings", ("features::ring::",)),
    ("entity tables (index and last-seen order)", ("features::table::",)),
    ("the feature row (own features, novelty sets, known values)", ("features::",)),
    ("the link graph", ("links::",)),
    ("the label store", ("labels::",)),
    ("decoding the JSON records", ("decode::",)),
    ("the core call's outputs and glue (arrays, the batch)", ("py_engine::", "engine::", "numpy::", "pyo3::")),
]
PYTHON = "Python: alerts with their reasons, the outcome arrays, the loop"
#: An engine built or freed between passes (the trees' construction, the old engine's teardown): not per event,
#: counted apart and left out of the shares.
SETUP = "set-up and teardown of an engine (between passes)"
SETUP_KEYS = ("drop_in_place<_core::py_engine::CoreEngine>", "hst::build_trees", "__pymethod___new__",
              "Py_FinalizeEx")
OTHER = "other (kernel, allocator outside the engine)"

CHILD = r"""
import sys, time
from stream.compiled import CompiledEngine
from stream.config import load_settings
from stream.events import encode
from stream.sim import SimConfig, simulate

n, batch, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
records = [encode(e) for e in simulate(SimConfig(events=n, seed=7))]
settings = load_settings(None)

def one_pass():
    engine = CompiledEngine(settings)
    t = time.perf_counter()
    for i in range(0, len(records), batch):
        engine.process_raw(records[i : i + batch])
    return time.perf_counter() - t

one_pass()  # warm: pages, caches, the allocator
seconds = one_pass()
print(f"{seconds / len(records) * 1e6:.3f}", flush=True)
sys.stdin.readline()  # perf is attached
for _ in range(rounds):
    one_pass()
import os
os._exit(0)  # no interpreter shutdown (its garbage collection) in the samples
"""


def stage_of(frames: list[str]) -> str:
    """The stage of one sample, from its frames' symbols, innermost first."""
    if any(any(k in sym for k in SETUP_KEYS) for sym in frames):
        return SETUP
    for sym in frames:
        for stage, keys in STAGES:
            if any(k in sym for k in keys):
                return stage
    if any("_PyEval" in sym or "PyObject" in sym for sym in frames):
        return PYTHON
    return OTHER


def samples(perf_data: Path) -> list[list[str]]:
    """Each sample's frame symbols, innermost first (``perf script``)."""
    out = subprocess.run(["perf", "script", "-i", str(perf_data), "-F", "ip,sym"], capture_output=True, text=True,
                         check=True).stdout
    result: list[list[str]] = []
    for block in out.split("\n\n"):
        frames = []
        for line in block.splitlines():
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                frames.append(parts[1])
        if frames:
            result.append(frames)
    return result


def profile(events: int, batch: int, rounds: int, frequency: int, keep: Path | None = None) -> dict:
    if shutil.which("perf") is None:
        raise SystemExit("core_profile: perf is not installed (Debian: linux-perf)")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(events), str(batch), str(rounds)], cwd=ROOT, env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    us_per_event = float(child.stdout.readline())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "perf.data"
        perf = subprocess.Popen(["perf", "record", "-F", str(frequency), "--call-graph", "dwarf,32768", "-p",
                                 str(child.pid), "-o", str(data)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(2.0)  # perf says nothing when it is attached; give it a moment before the profiled passes
        if perf.poll() is not None:
            child.kill()
            raise SystemExit(f"core_profile: perf record failed: {perf.communicate()[1].decode().strip()}")
        child.stdin.write("go\n")
        child.stdin.flush()
        if child.wait() != 0:
            raise SystemExit("core_profile: the profiled process failed")
        _, err = perf.communicate(timeout=120)
        if perf.returncode != 0:
            raise SystemExit(f"core_profile: perf record failed: {err.decode().strip()}")
        counts = Counter(stage_of(frames) for frames in samples(data))
        if keep is not None:
            shutil.copyfile(data, keep)
    setup = counts.pop(SETUP, 0)
    total = sum(counts.values())
    rows = [{"stage": stage, "share": n / total, "us_per_event": n / total * us_per_event}
            for stage, n in counts.most_common()]
    return {"events": events, "batch": batch, "rounds": rounds, "samples": total, "setup_samples": setup,
            "us_per_event_unprofiled": us_per_event, "stages": rows}


def table(result: dict) -> str:
    lines = ["| stage | share | µs / event |", "|---|---:|---:|"]
    for r in result["stages"]:
        lines.append(f"| {r['stage']} | {r['share'] * 100:.1f} % | {r['us_per_event']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--frequency", type=int, default=999, help="samples a second (perf -F)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--perf-data", type=Path, help="keep perf's samples here (perf report -i FILE)")
    args = ap.parse_args(argv)
    result = profile(args.events, args.batch, args.rounds, args.frequency, args.perf_data)
    print(f"{result['events']} events, {result['samples']} samples, "
          f"{result['us_per_event_unprofiled']:.2f} µs an event unprofiled")
    print(table(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
