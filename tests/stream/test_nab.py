"""NAB scoring: the windowed scorer's rules on small hand-made corpora, then the published scoreboard reproduced
from the published per-point scores, and the rate detector's run through ``riskstream nab``.

The data-backed tests need ``nab/`` in the shared data folder (``RISKSTREAM_DATA``, else ``../shared/data``
beside the repository: present on the team's machines and in CI) and skip with the reason when it is absent.
They reproduce ``numenta`` (HTM) and ``randomCutForest``: the shipped per-point scores of ``windowedGaussian``
are not the ones its scoreboard line was computed from (NAB's own per-file table has, e.g., no detection at all
in ``art_increase_spike_density.csv`` at its threshold 1.0, while the shipped scores reach 1.0 at 84 points
there), so no scorer can reproduce that line from them.
"""

from __future__ import annotations

import csv
import gzip
import math
from pathlib import Path

import numpy as np
import orjson
import pytest
from click.testing import CliRunner

from stream.errors import SourceError
from stream.eval.data import shared_data_dir
from stream.eval.nab import (
    NabScorer,
    NabSeries,
    Profile,
    evaluate,
    load_corpus,
    load_profiles,
    load_published_scores,
    load_thresholds,
    scaled_sigmoid,
)

STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
REPO = Path(__file__).resolve().parents[2]
DATA = shared_data_dir("nab", must_exist=False)
needs_data = pytest.mark.skipif(not (DATA / "combined_windows.json").is_file(), reason=f"NAB data not found at {DATA}")


def _series(n: int, windows, name: str = "s.csv") -> NabSeries:
    return NabSeries(name, np.arange(n).astype("datetime64[m]"), np.zeros(n), tuple(windows))


def _at(n: int, *points: int) -> np.ndarray:
    a = np.zeros(n)
    a[list(points)] = 1.0
    return a


# --- the scoring rules, by hand -----------------------------------------------------------------------------


def test_a_detection_in_a_window_earns_by_its_position_and_only_the_earliest_counts():
    s = _series(200, [(100, 119)])  # width 20, probation = 30 points
    sc = NabScorer([s], STANDARD)
    max_tp = 2 / (1 + math.exp(-5)) - 1
    for i in (100, 110, 119):
        expected = (2 / (1 + math.exp(5 * -(119 - i + 1) / 20)) - 1) / max_tp
        assert sc.raw_score({s.name: _at(200, i)}, 0.5) == pytest.approx(expected, rel=1e-12)
    assert sc.raw_score({s.name: _at(200, 100)}, 0.5) == pytest.approx(1.0)
    assert sc.raw_score({s.name: _at(200, 100, 105, 119)}, 0.5) == pytest.approx(1.0)  # the rest are free
    f = sc.score_file(s.name, _at(200, 100, 105, 119), 0.5)
    assert (f.tp, f.fp, f.fn, f.tn) == (3, 0, 17, 150)
    assert sc.raw_score({s.name: np.zeros(200)}, 0.5) == -1.0  # a missed window costs A_fn


def test_false_positives_cost_by_their_distance_after_the_last_window():
    s = _series(400, [(100, 119)])
    sc = NabScorer([s], STANDARD)
    assert sc.raw_score({s.name: _at(400, 70)}, 0.5) == pytest.approx(-1.0 - 0.11)  # before any window
    just_after = sc.raw_score({s.name: _at(400, 120)}, 0.5) + 1.0
    assert just_after == pytest.approx(0.11 * float(scaled_sigmoid(1 / 19)), rel=1e-12)
    assert -0.11 < just_after < 0.0
    far = sc.raw_score({s.name: _at(400, 119 + 3 * 19 + 1)}, 0.5) + 1.0
    assert far == pytest.approx(-0.11)  # more than 3 window widths past: the full A_fp


def test_probationary_points_are_not_scored():
    s = _series(100, [(5, 9), (60, 69)])  # probation = 15 points: the first window is never scored
    sc = NabScorer([s], STANDARD)
    assert sc.null_score == -1.0 and sc.perfect_score == 2.0
    f = sc.score_file(s.name, _at(100, 3, 7), 0.5)
    assert f.score == -1.0 and f.tp + f.tn + f.fp + f.fn == 85 and (f.tp, f.fp) == (0, 0)
    after = sc.score_file(s.name, _at(100, 3, 7, 18), 0.5)  # 18 is scored: 9 points after a 5-point window
    assert after.fp == 1 and after.score == pytest.approx(-1.0 + 0.11 * float(scaled_sigmoid(9 / 4)), rel=1e-12)
    long = _series(10_000, [])
    assert NabScorer([long], STANDARD).score_file(long.name, _at(10_000, 749), 0.5).fp == 0  # capped at 750
    assert NabScorer([long], STANDARD).score_file(long.name, _at(10_000, 750), 0.5).fp == 1


def test_normalisation_and_the_threshold_sweep_agree_with_scoring_at_each_threshold():
    rng = np.random.default_rng(7)
    corpus = [_series(300, [(80, 99), (200, 229)], "a.csv"), _series(500, [], "b.csv"),
              _series(250, [(240, 249)], "c.csv")]
    scores = {s.name: np.round(rng.random(len(s)), 2) for s in corpus}  # many ties
    scores["a.csv"][85] = scores["c.csv"][241] = 0.995
    for profile in (STANDARD, Profile("low_fn", 1.0, 0.11, 2.0), Profile("low_fp", 1.0, 0.22, 1.0)):
        sc = NabScorer(corpus, profile)
        thresholds, raw = sc.sweep(scores)
        assert thresholds[0] == math.inf and raw[0] == sc.null_score
        assert np.all(np.diff(thresholds) < 0)
        for t, r in zip(thresholds[1:], raw[1:], strict=True):
            assert r == pytest.approx(sc.raw_score(scores, t), abs=1e-9)
        best_t, best_raw = sc.optimize(scores)
        assert best_raw == raw.max() and best_t == thresholds[int(np.argmax(raw))]
        assert sc.normalize(sc.null_score) == 0.0 and sc.normalize(sc.perfect_score) == 100.0


def test_bad_scores_are_refused():
    s = _series(100, [(60, 69)])
    sc = NabScorer([s], STANDARD)
    with pytest.raises(ValueError, match="99 scores for 100 rows"):
        sc.score_file(s.name, np.zeros(99), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        sc.score_file(s.name, np.full(100, np.nan), 0.5)
    with pytest.raises(ValueError, match="no scores"):
        sc.sweep({})


def test_missing_data_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="combined_windows.json is missing"):
        load_corpus(tmp_path)


# --- the published scoreboard, reproduced ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(DATA)


@needs_data
def test_the_published_scoreboard_is_reproduced_from_the_shipped_scores(corpus):
    detectors = ("numenta", "randomCutForest")
    shipped = load_published_scores(detectors, corpus)
    profiles = load_profiles()
    thresholds = load_thresholds()
    board = orjson.loads((DATA / "final_results.json").read_bytes())
    assert len(corpus) == 58 and sum(len(s.windows) for s in corpus) == 116
    with gzip.open(DATA / "nab_detector_per_file_scores.csv.gz", "rt", newline="") as f:
        per_file = [r for r in csv.DictReader(f) if r["Detector"] in detectors and r["File"] != "Totals"]
    for d in detectors:
        result = evaluate(corpus, shipped[d], profiles, {p: thresholds[d][p]["threshold"] for p in profiles})
        for p in profiles:
            assert result[p]["score"] == pytest.approx(board[d][p], abs=1e-6), (d, p)
            assert result[p]["raw"] == pytest.approx(thresholds[d][p]["score"], abs=1e-6), (d, p)
        # NAB's optimiser finds the published standard threshold's score again
        best_t, best_raw = NabScorer(corpus, profiles["standard"]).optimize(shipped[d])
        assert best_raw == pytest.approx(thresholds[d]["standard"]["score"], abs=1e-9)
    scorers = {p: NabScorer(corpus, prof) for p, prof in profiles.items()}
    rows = [r for r in per_file if r["File"] in {s.name for s in corpus}]
    assert len(rows) == 2 * 3 * 58
    for r in rows:  # and every file's score and counts, as NAB's own per-file tables give them
        got = scorers[r["Profile"]].score_file(r["File"], shipped[r["Detector"]][r["File"]], float(r["Threshold"]))
        assert got.score == pytest.approx(float(r["Score"]), abs=1e-9), r
        assert (got.tp, got.tn, got.fp, got.fn) == (int(r["TP"]), int(r["TN"]), int(r["FP"]), int(r["FN"])), r


# --- the rate detector through the CLI ------------------------------------------------------------------------


@needs_data
def test_riskstream_nab_scores_the_rate_detector_above_60_as_committed(tmp_path):
    from stream.cli import cli

    out = tmp_path / "nab.json"
    result = CliRunner().invoke(cli, ["nab", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = orjson.loads(out.read_bytes())
    profiles = doc["rate"]["profiles"]
    assert profiles["standard"]["score"] >= 60.0
    assert profiles["standard"]["windows_detected"] > 80
    assert doc["detector"]["params"]["history"] == 8000
    assert doc["rate"]["points"] == 365_558
    committed = orjson.loads((REPO / "bench" / "nab" / "results.json").read_bytes())
    for p, row in committed["rate"]["profiles"].items():  # bench/nab/results.json is this run's numbers
        assert profiles[p]["score"] == pytest.approx(row["score"], abs=1e-9), p
        assert profiles[p]["threshold"] == pytest.approx(row["threshold"], abs=1e-12), p


@needs_data
def test_riskstream_nab_refuses_a_bad_parameter():
    from stream.cli import cli

    result = CliRunner().invoke(cli, ["nab", "--param", "history=0"])
    assert result.exit_code == 2
    assert "history must be a positive integer" in result.output
