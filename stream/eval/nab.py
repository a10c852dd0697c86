"""The Numenta Anomaly Benchmark (NAB v1.1): its windowed scoring, reproduced, and a runner for our detectors.

NAB (Lavin & Ahmad 2015, arXiv 1510.03336; Ahmad et al. 2017) scores a detector on 58 labelled series by
*anomaly windows*, not by points. This module re-implements the scorer of NAB v1.1 (``nab/sweeper.py``,
``nab/optimizer.py``, ``nab/scorer.py``, ``Runner.normalize``) from its description, with numpy, and is checked
against the published scoreboard from the published per-point scores (``tests/stream/test_nab.py``):

* Each series' first ``min(floor(0.15 * n), 750)`` points are *probationary*: not scored at all.
* A point whose anomaly score is ``>= threshold`` is a detection.
* A point inside a window ``[l, r]`` (index ``i``, width ``w = r - l + 1``) is worth
  ``A_tp * σ(-(r - i + 1) / w) / σ(-1)`` where ``σ(p) = 2 / (1 + exp(5 p)) - 1`` (the *scaled sigmoid*):
  the earliest detection in a window earns nearly ``A_tp``, a detection at its right edge little. Only the best
  (earliest) detection of a window counts; a window without one costs ``-A_fn``.
* A detection outside every window costs ``A_fp * σ(|i - r_prev| / (w_prev - 1))`` (``σ`` is ``-1`` past 3):
  a false positive just after a window is nearly free, one far from it (or before the first window) costs
  ``-A_fp``.
* A profile's raw score is summed over all files; ``100 * (raw - null) / (perfect - null)`` normalises it,
  where ``null`` is the raw score with no detection at all and ``perfect = A_tp * (number of windows)``.
* One threshold per detector and profile, the one that maximises the corpus' raw score, found by sweeping every
  distinct anomaly score (NAB's optimiser; every published threshold in ``thresholds.json`` was set that way).

Data comes from ``nab/`` in the shared data folder (:func:`stream.eval.data.shared_data_dir`: ``RISKSTREAM_DATA``,
else ``../shared/data`` beside the repository; see its ``README.md``): ``nab_timeseries_labeled.csv.gz``,
``combined_windows.json``, ``profiles.json``, ``thresholds.json``, ``final_results.json`` and the published
per-point scores ``nab_detector_anomaly_scores.csv.gz``.

>>> import numpy as np
>>> ts = np.arange(100).astype("datetime64[m]")
>>> corpus = [NabSeries("demo.csv", ts, np.zeros(100), ((60, 69),))]
>>> scorer = NabScorer(corpus, Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0))
>>> early, late = np.zeros(100), np.zeros(100)
>>> early[60] = 1.0
>>> late[69] = 1.0
>>> round(scorer.raw_score({"demo.csv": early}, 0.5), 4), round(scorer.raw_score({"demo.csv": late}, 0.5), 4)
(1.0, 0.2482)
>>> scorer.null_score, scorer.perfect_score
(-1.0, 1.0)
"""

from __future__ import annotations

import csv
import gzip
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.base import Detector
from stream.errors import SourceError
from stream.eval.data import shared_data_dir

__all__ = [
    "category",
    "corpus_scores",
    "cross_validate",
    "default_data_dir",
    "PROFILES",
    "FileScore",
    "NabScorer",
    "NabSeries",
    "Profile",
    "load_corpus",
    "load_profiles",
    "load_published_scores",
    "load_thresholds",
    "detector_scores",
    "evaluate",
    "run_nab",
    "scaled_sigmoid",
    "score_published",
    "TIME_FEATURE",
]

#: NAB's three application profiles, in its order.
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
PROBATION_PERCENT = 0.15
#: NAB caps the probationary period at ``0.15 * 5000`` points.
PROBATION_CAP = PROBATION_PERCENT * 5000


@dataclass(frozen=True)
class Profile:
    """One NAB application profile (a row of ``profiles.json``): the weights of TPs, FPs and FNs."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True)
class NabSeries:
    """One NAB data file: its relative path (``realTweets/Twitter_volume_AAPL.csv``), timestamps, values and
    anomaly windows as inclusive ``(first, last)`` row indices."""

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class FileScore:
    """A file's NAB score at one threshold, with NAB's point counts over its scored (non-probationary) rows."""

    score: float
    tp: int
    tn: int
    fp: int
    fn: int


def scaled_sigmoid(position: np.ndarray | float) -> np.ndarray:
    """NAB's ``scaledSigmoid``: ``2 * sigmoid(-5 p) - 1``, and ``-1`` for ``p > 3``."""
    p = np.asarray(position, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 * (1.0 / (1.0 + np.exp(5.0 * p))) - 1.0
    return np.where(p > 3.0, -1.0, val)


_MAX_TP = float(scaled_sigmoid(-1.0))


# --- data ----------------------------------------------------------------------------------------------------------


def default_data_dir() -> Path:
    """``nab/`` in the shared data folder (``RISKSTREAM_DATA``, else ``../shared/data`` beside the repository);
    :class:`~stream.eval.data.DataNotFound` names where it looked when it is not there."""
    return shared_data_dir("nab")


def _require(data_dir: str | Path | None, name: str) -> Path:
    data_dir = default_data_dir() if data_dir is None else Path(data_dir)
    path = data_dir / name
    if not path.is_file():
        raise SourceError(f"NAB data: {path} is missing (see {data_dir / 'README.md'})")
    return path


def load_profiles(data_dir: str | Path | None = None) -> dict[str, Profile]:
    """The profiles of ``profiles.json``, by name."""
    raw = orjson.loads(_require(data_dir, "profiles.json").read_bytes())
    return {
        name: Profile(name, float(p["CostMatrix"]["tpWeight"]), float(p["CostMatrix"]["fpWeight"]),
                      float(p["CostMatrix"]["fnWeight"]))
        for name, p in raw.items()
    }


def load_thresholds(data_dir: str | Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """``thresholds.json``: detector -> profile -> ``{"threshold", "score"}`` (the published raw scores)."""
    return orjson.loads(_require(data_dir, "thresholds.json").read_bytes())


def _datetimes(strings: Sequence[str]) -> np.ndarray:
    return np.array(strings, dtype="datetime64[us]")


def load_corpus(data_dir: str | Path | None = None) -> list[NabSeries]:
    """The 58 NAB series (``nab_timeseries_labeled.csv.gz``) with their windows (``combined_windows.json``).

    Raises :class:`~stream.errors.SourceError` when a file is missing or a window limit is not a timestamp of
    its file (NAB demands exact matches).
    """
    data_dir = default_data_dir() if data_dir is None else Path(data_dir)
    windows = orjson.loads(_require(data_dir, "combined_windows.json").read_bytes())
    names: list[str] = []
    stamps: dict[str, list[str]] = {}
    values: dict[str, list[str]] = {}
    with gzip.open(_require(data_dir, "nab_timeseries_labeled.csv.gz"), "rt", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        i_series, i_ts, i_value = header.index("series"), header.index("timestamp"), header.index("value")
        for row in reader:
            name = row[i_series]
            if name not in stamps:
                names.append(name)
                stamps[name], values[name] = [], []
            stamps[name].append(row[i_ts])
            values[name].append(row[i_value])
    corpus = []
    for name in names:
        ts = _datetimes(stamps[name])
        limits = []
        for start, end in windows.get(name, []):
            # NAB matches window limits exactly, at their first occurrence (a few files repeat a timestamp).
            lo, hi = (np.flatnonzero(ts == t) for t in _datetimes([start, end]))
            if not len(lo) or not len(hi) or hi[0] < lo[0]:
                raise SourceError(f"NAB data: {name}: window [{start}, {end}] does not match its timestamps")
            limits.append((int(lo[0]), int(hi[0])))
        corpus.append(NabSeries(name, ts, np.array(values[name], dtype=np.float64), tuple(limits)))
    missing = set(windows) - set(stamps)
    if missing:
        raise SourceError(f"NAB data: windows for series not in the data: {sorted(missing)[:3]}")
    return corpus


def load_published_scores(detectors: Iterable[str], corpus: Sequence[NabSeries],
                          data_dir: str | Path | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The published per-point anomaly scores of ``detectors`` (``nab_detector_anomaly_scores.csv.gz``), as
    detector -> series -> scores by row, as NAB's scorer pairs them with the data (by position);
    :class:`~stream.errors.SourceError` if a detector is missing or a file's rows are not those of the data."""
    wanted = {d.encode() for d in detectors}
    rows: dict[bytes, list[bytes]] = {d: [] for d in wanted}
    done: set[bytes] = set()
    rest = b""
    # The file is grouped by detector: read it in large blocks and split only the blocks holding a wanted one.
    with gzip.open(_require(data_dir, "nab_detector_anomaly_scores.csv.gz"), "rb") as f:
        f.readline()
        while done != wanted:
            block = f.read(1 << 23)
            data = rest + block
            cut = len(data) if not block else data.rfind(b"\n") + 1
            data, rest = data[:cut], data[cut:]
            if not data:
                break
            framed = b"\n" + data
            for det in wanted - done:
                prefix = det + b","
                if b"\n" + prefix in framed:
                    rows[det].extend(ln for ln in data.split(b"\n") if ln.startswith(prefix))
                    if not data.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(prefix):
                        done.add(det)
    out: dict[str, dict[str, np.ndarray]] = {}
    expected = sum(len(s) for s in corpus)
    for det, lines in rows.items():
        name = det.decode()
        if len(lines) != expected:
            raise SourceError(f"published scores of {name!r}: {len(lines)} rows, the corpus has {expected}")
        fields = b",".join(lines).replace(b"\r", b"").split(b",")
        series = np.array(fields[1::4])
        stamps = np.array(fields[2::4]).astype("U").astype("datetime64[us]")
        scores = np.array(fields[3::4]).astype(np.float64)
        per: dict[str, np.ndarray] = {}
        pos = 0
        for s in corpus:
            n = len(s)
            if not (series[pos : pos + n] == s.name.encode()).all():
                raise SourceError(f"published scores of {name!r}: rows {pos}..{pos + n - 1} are not all {s.name}")
            # NAB pairs a results file's scores with the data file's rows by position; some published results
            # files list a repeated hour (a DST change) in sorted order, so only the set of timestamps must agree.
            if not np.array_equal(np.sort(stamps[pos : pos + n]), np.sort(s.timestamps)):
                raise SourceError(f"published scores of {name!r}: timestamps of {s.name} differ from the data")
            per[s.name] = scores[pos : pos + n]
            pos += n
        out[name] = per
    return out


# --- scoring -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """A file's NAB sweep scores (``calcSweepScore``) and who is scored."""

    sweep: np.ndarray  # weighted score of each row if it were a detection
    window: np.ndarray  # window number in the corpus for rows in a window, -1 outside
    scored: np.ndarray  # False in the probationary period
    n_windows: int  # windows with at least one scored row


class NabScorer:
    """NAB's scorer for one profile over a corpus.

    Parameters
    ----------
    corpus
        The series (``load_corpus``).
    profile
        The cost weights (``load_profiles()["standard"]``).
    probation_percent
        Fraction of each file not scored (NAB: 0.15, capped at 750 points).
    """

    def __init__(self, corpus: Sequence[NabSeries], profile: Profile, probation_percent: float = PROBATION_PERCENT
                 ) -> None:
        self.corpus = list(corpus)
        self.profile = profile
        self.probation_percent = probation_percent
        self._prep: dict[str, _Prepared] = {}
        self._window_ids: dict[str, int] = {}
        first_window = 0
        for s in self.corpus:
            if s.name in self._prep:
                raise ValueError(f"series {s.name!r} appears twice in the corpus")
            self._prep[s.name] = self._prepare(s, first_window)
            first_window += len(s.windows)
        self.n_windows = first_window
        #: Raw score of a detector that never detects (NAB's null detector).
        self.null_score = -profile.fn_weight * sum(p.n_windows for p in self._prep.values())
        #: Raw score of a detector that detects every window at its first row and nothing else.
        self.perfect_score = profile.tp_weight * self.n_windows

    def _prepare(self, s: NabSeries, first_window: int) -> _Prepared:
        n = len(s)
        p = self.profile
        idx = np.arange(n)
        sweep = np.empty(n)
        window = np.full(n, -1, dtype=np.int64)
        prev_right, prev_width = -1, 0.0
        start = 0
        for k, (lo, hi) in enumerate(s.windows):
            width = float(hi - lo + 1)
            gap = idx[start:lo]
            sweep[start:lo] = p.fp_weight * self._after(gap, prev_right, prev_width)
            inside = idx[lo : hi + 1]
            sweep[lo : hi + 1] = scaled_sigmoid(-(hi - inside + 1) / width) * p.tp_weight / _MAX_TP
            window[lo : hi + 1] = first_window + k
            prev_right, prev_width, start = hi, width, hi + 1
        sweep[start:] = p.fp_weight * self._after(idx[start:], prev_right, prev_width)
        probation = min(math.floor(self.probation_percent * n), self.probation_percent * 5000)
        scored = idx >= probation
        ids = np.unique(window[scored & (window >= 0)])
        return _Prepared(sweep, window, scored, len(ids))

    @staticmethod
    def _after(idx: np.ndarray, prev_right: int, prev_width: float) -> np.ndarray:
        if prev_right < 0:
            return np.full(len(idx), -1.0)
        return scaled_sigmoid(np.abs(prev_right - idx) / (prev_width - 1.0))

    def _scores(self, name: str, scores: np.ndarray) -> np.ndarray:
        prep = self._prep[name]
        a = np.asarray(scores, dtype=np.float64)
        if a.shape != prep.sweep.shape:
            raise ValueError(f"{name}: {a.shape[0] if a.ndim == 1 else a.shape} scores for {len(prep.sweep)} rows")
        if np.isnan(a).any():
            raise ValueError(f"{name}: NaN anomaly scores")
        return a

    def score_file(self, name: str, scores: np.ndarray, threshold: float) -> FileScore:
        """NAB's ``scoreDataSet``: the file's score and counts when rows scoring ``>= threshold`` are detections."""
        prep = self._prep[name]
        a = self._scores(name, scores)
        det = (a >= threshold) & prep.scored
        inside = prep.window >= 0
        fp_rows = det & ~inside
        total = float(prep.sweep[fp_rows].sum())
        for w in np.unique(prep.window[prep.scored & inside]):
            hits = np.flatnonzero(det & (prep.window == w))
            total += float(prep.sweep[hits[0]]) if len(hits) else -self.profile.fn_weight
        tp = int((det & inside).sum())
        fp = int(fp_rows.sum())
        tn = int((prep.scored & ~inside).sum()) - fp
        fn = int((prep.scored & inside).sum()) - tp
        return FileScore(total, tp, tn, fp, fn)

    def windows_detected(self, name: str, scores: np.ndarray, threshold: float) -> int:
        """How many of the file's scored windows hold a detection at ``threshold``."""
        prep = self._prep[name]
        det = (self._scores(name, scores) >= threshold) & prep.scored & (prep.window >= 0)
        return len(np.unique(prep.window[det]))

    def raw_score(self, scores: Mapping[str, np.ndarray], threshold: float) -> float:
        """The corpus' raw score at ``threshold`` (the sum of :meth:`score_file` over every file)."""
        self._check_names(scores)
        return sum(self.score_file(s.name, scores[s.name], threshold).score for s in self.corpus)

    def normalize(self, raw: float) -> float:
        """NAB's normalised score: 0 for the null detector, 100 for the perfect one."""
        return 100.0 * (raw - self.null_score) / (self.perfect_score - self.null_score)

    def _check_names(self, scores: Mapping[str, np.ndarray]) -> None:
        missing = [s.name for s in self.corpus if s.name not in scores]
        if missing:
            raise ValueError(f"no scores for {len(missing)} series, e.g. {missing[0]}")

    def sweep(self, scores: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """NAB's ``calcScoreByThreshold`` over the whole corpus: every candidate threshold (``inf`` for "no
        detection", then each distinct score, descending) and the corpus' raw score at it."""
        self._check_names(scores)
        a = np.concatenate([self._scores(s.name, scores[s.name])[self._prep[s.name].scored] for s in self.corpus])
        sweep = np.concatenate([self._prep[s.name].sweep[self._prep[s.name].scored] for s in self.corpus])
        window = np.concatenate([self._prep[s.name].window[self._prep[s.name].scored] for s in self.corpus])
        n = len(a)
        order = np.argsort(-a, kind="stable")  # processing order: highest score first
        a_sorted, w_sorted = a[order], window[order]
        # A false positive adds its (negative) sweep score. A window's part is the best sweep score among its
        # detections so far, i.e. that of its earliest row, starting at -A_fn: add the change at each step.
        delta = np.where(w_sorted < 0, sweep[order], 0.0)
        steps = np.flatnonzero(w_sorted >= 0)
        if len(steps):
            steps = steps[np.argsort(w_sorted[steps], kind="stable")]  # grouped by window, in processing order
            w = w_sorted[steps]
            offset = w * (n + 1)
            earliest = n - (np.maximum.accumulate(offset + (n - order[steps])) - offset)
            value = sweep[earliest]
            first = np.r_[True, w[1:] != w[:-1]]
            previous = np.where(first, -self.profile.fn_weight, np.r_[0.0, value[:-1]])
            delta[steps] = value - previous
        running = self.null_score + np.cumsum(delta)
        last_of_tie = np.r_[a_sorted[1:] != a_sorted[:-1], True]
        thresholds = np.r_[np.inf, a_sorted[last_of_tie]]
        raw = np.r_[self.null_score, running[last_of_tie]]
        return thresholds, raw

    def optimize(self, scores: Mapping[str, np.ndarray]) -> tuple[float, float]:
        """NAB's optimiser: the threshold with the best corpus raw score (the highest such threshold on ties),
        and that score."""
        thresholds, raw = self.sweep(scores)
        best = int(np.argmax(raw))
        return float(thresholds[best]), float(raw[best])


# --- choosing parameters without the series they are scored on ----------------------------------------------------


def category(name: str) -> str:
    """A series' NAB category: the folder of its name (``realTweets`` for ``realTweets/Twitter_volume_FB.csv``)."""
    return name.split("/", 1)[0] if "/" in name else ""


def cross_validate(corpus: Sequence[NabSeries], candidates: Mapping[str, Mapping[str, np.ndarray]],
                   profiles: Mapping[str, Profile], *, select: str = "standard",
                   prefer: str | None = None) -> dict[str, Any]:
    """Leave one NAB category out: choose a detector's parameters on the other categories, score them on it.

    ``candidates`` maps a candidate's name to its per-point scores of every series (one run of the detector with
    those parameters). For each category, the candidate with the best ``select``-profile corpus score over the
    *other* categories (each at its own optimised threshold) is that category's pick; ties go to ``prefer``, else
    to the first candidate. Two held-out figures per profile come out, both normalised over the whole corpus:

    * ``parameters_held_out``: every series scored with its category's pick, one threshold for the corpus from
      NAB's optimiser (NAB's protocol for the threshold, as on its scoreboard, with parameters never chosen on
      the series scored);
    * ``all_held_out``: each category scored at the threshold its pick had on the other categories, so no
      choice, parameter or threshold, has seen the series it is scored on.

    ``in_sample`` is each candidate's own corpus score (threshold optimised), what choosing on all of NAB gives.
    With ``prefer``, ``prefer_all_held_out`` is the preferred candidate (the defaults) kept everywhere, each
    category cut at the threshold it has on the others: the baseline the ``all_held_out`` figure is read against.
    """
    corpus = list(corpus)
    names = list(candidates)
    if not names:
        raise ValueError("no candidates to cross-validate")
    if prefer is not None and prefer not in candidates:
        raise ValueError(f"the preferred candidate {prefer!r} is not among the candidates")
    if select not in profiles:
        raise ValueError(f"no profile {select!r} to select on; profiles: {', '.join(profiles)}")
    cats = list(dict.fromkeys(category(s.name) for s in corpus))
    if len(cats) < 2:
        raise ValueError("cross-validation needs series of at least two categories")
    order = ([prefer] if prefer is not None else []) + [k for k in names if k != prefer]

    def best(scorer: NabScorer) -> tuple[str, float, float]:
        found: tuple[str, float, float] | None = None
        for k in order:  # a strict improvement only: ties keep the earlier (preferred) candidate
            threshold, raw = scorer.optimize(candidates[k])
            if found is None or raw > found[2]:
                found = (k, threshold, raw)
        assert found is not None
        return found

    full = {p: NabScorer(corpus, prof) for p, prof in profiles.items()}
    # per held-out category, each profile's scorer over the other categories
    trains = {c: {p: NabScorer([s for s in corpus if category(s.name) != c], prof) for p, prof in profiles.items()}
              for c in cats}
    folds: dict[str, dict[str, Any]] = {}
    for c in cats:
        train_scorers = trains[c]
        pick, _, raw = best(train_scorers[select])
        thresholds = {p: train_scorers[p].optimize(candidates[pick])[0] for p in profiles}
        folds[c] = {
            "pick": pick,
            "series": sum(1 for s in corpus if category(s.name) == c),
            "windows": sum(len(s.windows) for s in corpus if category(s.name) == c),
            "train_score": train_scorers[select].normalize(raw),
            "thresholds": {p: _json_threshold(t) for p, t in thresholds.items()},
        }
    mixed = {s.name: candidates[folds[category(s.name)]["pick"]][s.name] for s in corpus}
    out: dict[str, Any] = {"select": select, "prefer": prefer, "folds": folds,
                           "parameters_held_out": {}, "all_held_out": {}, "in_sample": {}}
    for p, scorer in full.items():
        threshold, raw = scorer.optimize(mixed)
        out["parameters_held_out"][p] = {"threshold": _json_threshold(threshold), "score": scorer.normalize(raw)}
        held = 0.0
        for s in corpus:
            fold = folds[category(s.name)]
            t = fold["thresholds"][p]
            held += scorer.score_file(s.name, mixed[s.name], math.inf if t is None else t).score
        out["all_held_out"][p] = {"score": scorer.normalize(held)}
        if prefer is not None:
            base = 0.0
            for c in cats:
                t, _ = trains[c][p].optimize(candidates[prefer])
                base += sum(scorer.score_file(s.name, candidates[prefer][s.name], t).score
                            for s in corpus if category(s.name) == c)
            out.setdefault("prefer_all_held_out", {})[p] = {"score": scorer.normalize(base)}
        out["in_sample"][p] = {k: scorer.normalize(scorer.optimize(candidates[k])[1]) for k in names}
    return out


# --- running detectors ---------------------------------------------------------------------------------------------


#: Key of the event time (epoch seconds) in the feature dicts :func:`detector_scores` streams.
TIME_FEATURE = "ts"


def detector_scores(detector_factory: Callable[[], Detector], series: NabSeries, feature: str = "value"
                    ) -> np.ndarray:
    """Stream one series through a fresh detector, score then learn each point (prequential), as
    ``{feature: value, "ts": epoch seconds}``; returns the scores."""
    det = detector_factory()
    epoch = series.timestamps.astype("datetime64[us]").astype(np.int64) / 1e6
    xs = [{feature: float(v), TIME_FEATURE: float(t)} for v, t in zip(series.values, epoch, strict=True)]
    out = np.asarray(det.process_many(xs), dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{series.name}: the detector returned non-finite scores")
    return out


def corpus_scores(detector_factory: Callable[[], Detector], corpus: Sequence[NabSeries], feature: str = "value",
                  *, on_series: Callable[[str, int], None] | None = None) -> dict[str, np.ndarray]:
    """:func:`detector_scores` for every series of the corpus, a fresh detector each: series name -> scores."""
    scores: dict[str, np.ndarray] = {}
    for s in corpus:
        scores[s.name] = detector_scores(detector_factory, s, feature)
        if on_series is not None:
            on_series(s.name, len(s))
    return scores


def _json_threshold(t: float) -> float | None:
    return None if math.isinf(t) else t


def evaluate(corpus: Sequence[NabSeries], scores: Mapping[str, np.ndarray], profiles: Mapping[str, Profile],
             thresholds: Mapping[str, float] | None = None, *, per_file: bool = False) -> dict[str, dict[str, Any]]:
    """Score a detector's per-point scores under each profile, at the given threshold per profile or at the one
    NAB's optimiser finds.

    Returns profile -> ``{"threshold", "raw", "score", "tp", "tn", "fp", "fn", "windows", "windows_detected"}``
    (``score`` is NAB's normalised score; ``threshold`` is ``None`` when detecting nothing scores best), and
    with ``per_file`` a ``"files"`` entry: series -> ``{"score", "tp", "fp", "windows", "windows_detected"}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, profile in profiles.items():
        scorer = NabScorer(corpus, profile)
        if thresholds is None:
            threshold, _ = scorer.optimize(scores)
        else:
            threshold = float(thresholds[name])
        files = {s.name: scorer.score_file(s.name, scores[s.name], threshold) for s in corpus}
        detected = {s.name: scorer.windows_detected(s.name, scores[s.name], threshold) for s in corpus}
        raw = sum(f.score for f in files.values())
        row: dict[str, Any] = {
            "threshold": _json_threshold(threshold),
            "raw": raw,
            "score": scorer.normalize(raw),
            "tp": sum(f.tp for f in files.values()),
            "tn": sum(f.tn for f in files.values()),
            "fp": sum(f.fp for f in files.values()),
            "fn": sum(f.fn for f in files.values()),
            "windows": scorer.n_windows,
            "windows_detected": sum(detected.values()),
        }
        if per_file:
            row["files"] = {
                s.name: {"score": files[s.name].score, "tp": files[s.name].tp, "fp": files[s.name].fp,
                         "windows": len(s.windows), "windows_detected": detected[s.name]}
                for s in corpus
            }
        out[name] = row
    return out


def run_nab(detector_factory: Callable[[], Detector], data_dir: str | Path | None = None, *,
            feature: str = "value", per_file: bool = False,
            on_series: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Run a detector over every NAB series (a fresh one per series; each point scored, then learned; no
    labels), set each profile's threshold with NAB's optimiser, and score it as NAB does.

    Returns ``{"detector": repr, "series", "points", "windows", "seconds", "profiles": {profile: ...}}`` with
    :func:`evaluate`'s rows under ``profiles``; ``seconds`` is the time spent detecting.
    """
    corpus = load_corpus(data_dir)
    profiles = load_profiles(data_dir)
    started = time.perf_counter()
    scores = corpus_scores(detector_factory, corpus, feature, on_series=on_series)
    seconds = time.perf_counter() - started
    return {
        "detector": repr(detector_factory()),
        "series": len(corpus),
        "points": sum(len(s) for s in corpus),
        "windows": sum(len(s.windows) for s in corpus),
        "seconds": round(seconds, 2),
        "profiles": evaluate(corpus, scores, profiles, per_file=per_file),
    }


def score_published(detectors: Sequence[str], data_dir: str | Path | None = None,
                    corpus: Sequence[NabSeries] | None = None) -> dict[str, dict[str, Any]]:
    """Score published detectors from their shipped per-point scores with this scorer, beside the scoreboard.

    For each detector: ``"published"`` (``final_results.json``), ``"at_published_threshold"`` (this scorer at
    ``thresholds.json``'s threshold) and ``"optimised"`` (this scorer at the threshold its optimiser finds),
    each profile -> normalised score.
    """
    corpus = load_corpus(data_dir) if corpus is None else list(corpus)
    profiles = load_profiles(data_dir)
    thresholds = load_thresholds(data_dir)
    board = orjson.loads(_require(data_dir, "final_results.json").read_bytes())
    unknown = [d for d in detectors if d not in thresholds]
    if unknown:
        raise SourceError(f"no published detector {unknown[0]!r}; known: {', '.join(sorted(thresholds))}")
    shipped = load_published_scores(detectors, corpus, data_dir)
    out: dict[str, dict[str, Any]] = {}
    for d in detectors:
        at = evaluate(corpus, shipped[d], profiles, {p: thresholds[d][p]["threshold"] for p in profiles})
        opt = evaluate(corpus, shipped[d], profiles)
        out[d] = {
            "published": {p: board[d][p] for p in profiles} if d in board else None,
            "at_published_threshold": {p: at[p]["score"] for p in profiles},
            "optimised": {p: opt[p]["score"] for p in profiles},
        }
    return out
