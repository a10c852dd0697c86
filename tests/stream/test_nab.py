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
    cross_validate,
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


# --- leave one category out ------------------------------------------------------------------------------------


def _three_categories():
    """Three categories of one series each (a window at rows 60-69), and two candidates: ``good_ab`` finds the
    windows of ``a`` and ``b`` and only a false positive in ``c``; ``good_c`` finds only ``c``'s."""
    corpus = [_series(100, [(60, 69)], f"{c}/s.csv") for c in "abc"]
    candidates = {
        "good_ab": {"a/s.csv": _at(100, 60), "b/s.csv": _at(100, 60), "c/s.csv": _at(100, 30)},
        "good_c": {"a/s.csv": _at(100), "b/s.csv": _at(100), "c/s.csv": _at(100, 60)},
    }
    return corpus, candidates


def test_each_category_is_scored_with_the_candidate_chosen_on_the_others():
    corpus, candidates = _three_categories()
    cv = cross_validate(corpus, candidates, {"standard": STANDARD}, prefer="good_ab")
    # On all three, good_ab wins (2 windows, 1 missed, 1 false positive: 0.89 against -1). Without a, good_ab
    # has b's window against c's miss and false positive (-0.11), good_c has c's window against b's miss (0).
    assert cv["in_sample"]["standard"]["good_ab"] == pytest.approx(100 * (0.89 + 3) / 6)
    assert {c: f["pick"] for c, f in cv["folds"].items()} == {"a": "good_c", "b": "good_c", "c": "good_ab"}
    assert cv["folds"]["a"]["train_score"] == pytest.approx(100 * (0 + 2) / 4)
    # Held out, a and b get good_c's nothing and c good_ab's false positive: the corpus' best threshold then is
    # to detect nothing (raw -3, the null score).
    assert cv["parameters_held_out"]["standard"]["score"] == pytest.approx(0.0)
    # With the threshold held out too, each category is cut at 1.0, its pick's threshold on the others: a and b
    # miss (-1 each), c misses and pays its false positive before the window (-1.11).
    assert cv["folds"]["c"]["thresholds"]["standard"] == 1.0
    assert cv["all_held_out"]["standard"]["score"] == pytest.approx(100 * (-3.11 + 3) / 6)
    # good_ab kept everywhere: a and b at the threshold good_ab has on the others (1.0) find their windows, c
    # (threshold 1.0 on a and b) misses and pays its false positive.
    assert cv["prefer_all_held_out"]["standard"]["score"] == pytest.approx(100 * (0.89 + 3) / 6)


def test_ties_go_to_the_preferred_candidate_and_bad_calls_are_refused():
    corpus, candidates = _three_categories()
    twins = {"first": candidates["good_ab"], "second": candidates["good_ab"]}
    assert {f["pick"] for f in cross_validate(corpus, twins, {"standard": STANDARD})["folds"].values()} == {"first"}
    cv = cross_validate(corpus, twins, {"standard": STANDARD}, prefer="second")
    assert {f["pick"] for f in cv["folds"].values()} == {"second"}
    with pytest.raises(ValueError, match="at least two categories"):
        cross_validate(corpus[:1], {"x": candidates["good_ab"]}, {"standard": STANDARD})
    with pytest.raises(ValueError, match="not among the candidates"):
        cross_validate(corpus, candidates, {"standard": STANDARD}, prefer="nope")


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


def test_riskstream_nab_refuses_a_bad_grid_before_running(tmp_path):
    from stream.cli import cli

    grid = tmp_path / "grid.toml"
    grid.write_text("history = [4000, 0]\n")
    result = CliRunner().invoke(cli, ["nab", "--grid", str(grid)])
    assert result.exit_code == 2
    assert "history = 0" in result.output and "history must be a positive integer" in result.output
    grid.write_text("history = 4000\n")
    result = CliRunner().invoke(cli, ["nab", "--grid", str(grid)])
    assert result.exit_code == 2 and "must be a non-empty list" in result.output


@needs_data
def test_riskstream_nab_cross_validates_a_grid_by_category(tmp_path):
    from stream.cli import cli

    grid = tmp_path / "grid.toml"
    grid.write_text("history = [8000, 16000]\n")
    out = tmp_path / "nab.json"
    result = CliRunner().invoke(cli, ["nab", "--grid", str(grid), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = orjson.loads(out.read_bytes())
    cv = doc["cross_validation"]
    assert cv["prefer"] == "history=8000"  # the defaults' candidate
    assert set(cv["candidates"]) == {"history=8000", "history=16000"}
    # The defaults' candidate, scored on all of NAB, is the plain run's score.
    std = doc["rate"]["profiles"]["standard"]["score"]
    assert cv["in_sample"]["standard"]["history=8000"] == pytest.approx(std, abs=1e-9)
    assert len(cv["folds"]) == 7 and sum(f["series"] for f in cv["folds"].values()) == 58
    assert sum(f["windows"] for f in cv["folds"].values()) == 116
    # history 16000 scores below 8000 on each set of six categories, so every category gets 8000: held out, the score
    # is then the defaults' own, threshold and all.
    assert {f["pick"] for f in cv["folds"].values()} == {"history=8000"}
    assert cv["parameters_held_out"]["standard"]["score"] == pytest.approx(std, abs=1e-9)
    # Every pick is the defaults', so the held-out thresholds give the defaults' own held-out baseline.
    assert cv["all_held_out"]["standard"]["score"] == pytest.approx(cv["prefer_all_held_out"]["standard"]["score"])
    assert cv["all_held_out"]["standard"]["score"] < std  # a category cut at the others' threshold loses a little
    assert "held out by category" in result.output
