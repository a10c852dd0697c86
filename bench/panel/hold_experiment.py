"""Experiment (not a default, not a config option): calibrators that hold back what they flag.

The ensemble's learning gate keeps a detector from learning an event its own calibrator ranks in the top
``protect`` (``p <= protect``), but the calibrator itself learns every score. In a burst of ``L`` similar attacks
the first ``protect x calibration_window`` (0.01 x 20,000 = 200) are ranked rare, then the calibrator's window
holds enough of them that ``p`` rises past ``protect``, the gate opens and HST learns the burst as normal.

Here each learning detector's calibrator *holds back* the scores it flags: it ranks every score, but adds a flagged
one (``p <= protect``) to its window only every ``k``-th time (a shift is accepted as normal after it has lasted
about ``k x protect x window`` events). ``k = 0`` is the engine as it is. The hold is patched into the Python
reference engine (``[engine] core = "python"``) for this one command, so the report's configuration hash is the
defaults'; the compiled core does not have it.

    python bench/panel/hold_experiment.py --hold 10 replay $CACHE/kdd_http.csv.gz --type order \
        --map ts=ts,label=label --set user_id=host,merchant_id=http,amount=0 \
        --features duration,src_bytes,dst_bytes --budget 0.005 -q --report bench/panel/results/http__hold10.json

``--long W`` instead tries the other idea below the results: the gate also asks a second calibrator over the
last ``W`` scores that learns every score, and the detector learns only when both ranks exceed ``protect``.

Everything after ``--hold K`` / ``--long W`` is a ``riskstream`` command line; ``-c`` is added with
``[engine] core = "python"``.
Results and the decision: ``bench/panel/README.md``, "Calibrators that hold back what they flag".
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from detectors import calibration  # noqa: E402


def holding_update_many(k: int):
    """A ``TailCalibrator.update_many`` whose gated calls (``protect > 0``: a learning detector's gate) add a
    flagged score only every ``k``-th time; ungated calls (the final calibrator, rules) are unchanged."""
    plain = calibration.TailCalibrator.update_many

    def update_many(self, scores, *, stop=None, protect=0.0):
        if protect <= 0:
            return plain(self, scores, stop=stop, protect=protect)
        held = getattr(self, "_held", 0)
        out = []
        for i, s in enumerate(np.asarray(scores, dtype=np.float64).ravel().tolist()):
            p = self.tail(s)  # what update() would return: the rank against the window before s
            if p <= protect:
                held += 1
                if held % k == 0:
                    self.update(s)
            else:
                self.update(s)
            out.append(p)
            if stop is not None and stop[i] and p <= protect:
                break  # the gate refused a score whose refusal changes what comes next
        self._held = held
        return np.array(out, dtype=np.float64)

    return update_many


def long_reference_gate(window: int) -> None:
    """Second variant: each learning detector's gate also asks a calibrator over the last ``window`` scores that
    learns every score (a reference at a longer time scale); the detector learns only when both ``p`` exceed
    ``protect``. The evidence keeps the usual calibrator's ``p``."""
    from detectors import ensemble

    gate = ensemble._CalibratingGate
    longs: dict[int, calibration.TailCalibrator] = {}

    def long_of(cal):
        return longs.setdefault(id(cal), calibration.TailCalibrator(window=window))

    def call(self, s):
        p = self.cal.update(s)
        pl = long_of(self.cal).update(s)
        self.parts.append(p)
        self.asked += 1
        return p > self.protect and pl > self.protect

    def many(self, scores, stop=None):
        out, allow = [], []
        long = long_of(self.cal)
        for i, s in enumerate(np.asarray(scores, dtype=np.float64).ravel().tolist()):
            p = self.cal.update(s)
            pl = long.update(s)  # learns every score, flagged or not
            ok = p > self.protect and pl > self.protect
            out.append(p)
            allow.append(ok)
            if stop is not None and stop[i] and not ok:
                break
        self.parts.append(np.array(out, dtype=np.float64))
        self.asked += len(out)
        return np.array(allow, dtype=bool)

    gate.__call__ = call
    gate.many = many


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[0] not in ("--hold", "--long") or not argv[1].isdigit():
        sys.exit("usage: hold_experiment.py --hold K | --long W  <riskstream arguments...>  (0 = the engine as it is)")
    k = int(argv[1])
    if k and argv[0] == "--hold":
        calibration.TailCalibrator.update_many = holding_update_many(k)
    elif k:
        long_reference_gate(k)
    from stream.cli import main as riskstream

    with tempfile.TemporaryDirectory() as tmp:
        engine = Path(tmp) / "python-engine.toml"
        engine.write_text('[engine]\ncore = "python"\n')
        riskstream([*argv[2:], "-c", str(engine)])


if __name__ == "__main__":
    main(sys.argv[1:])
