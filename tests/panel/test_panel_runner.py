"""bench/panel/run.py: the panel runner replays a stream, keeps its report and formats the table from it."""

from __future__ import annotations

import csv
import gzip
import json
import random
from pathlib import Path

import pytest

from tests.panel.conftest import load_script

ROOT = Path(__file__).resolve().parents[2]


run = load_script("run")
fetch = load_script("fetch")

STREAMS_TOML = """
[panel]
budget = 0.01

[[streams]]
name = "tiny"
title = "Tiny | synthetic"
kind = "replay"
source = "github:example/tiny"
file = "tiny.csv.gz"
args = ["--type", "order", "--map", "ts=ts,amount=amount,label=label", "--set", "user_id=u,merchant_id=m",
        "--features", "none"]

[[streams.published]]
model = "a | b"
roc_auc = 0.9
ap = 0.5
source = "made up"
"""


def _tiny_stream(path: Path, n: int = 1500) -> int:
    """Orders of ~20 with 15 of ~5000 (labelled 1) after the first 600 events."""
    rng = random.Random(3)
    frauds = set(rng.sample(range(600, n), 15))
    with gzip.open(path, "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ts", "amount", "label"])
        for i in range(n):
            w.writerow([i * 60, round(5000 + rng.random() * 100 if i in frauds else 15 + rng.random() * 10, 2),
                        int(i in frauds)])
    return len(frauds)


@pytest.fixture(scope="module")
def panel(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("panel")
    cache, results = tmp / "cache", tmp / "results"
    cache.mkdir()
    _tiny_stream(cache / "tiny.csv.gz")
    (tmp / "streams.toml").write_text(STREAMS_TOML)
    run.main(["--streams", str(tmp / "streams.toml"), "--cache", str(cache), "--results", str(results),
              "--tuning", str(tmp / "no-tuning.toml")])
    return results


def test_the_runner_replays_and_keeps_the_report(panel):
    report = json.loads((panel / "tiny__default.json").read_text())
    assert report["events"] == 1500 and report["positives"] == 15
    assert report["budget"] == 0.01  # the panel's budget rule reached the replay
    assert report["roc_auc"] > 0.8  # the huge amounts are found: the mapping carried amount and label through
    assert json.loads((panel / "tiny__loo.json").read_text())["same_as"] == "default"
    command = json.loads((panel / "tiny__default.command.json").read_text())["command"]
    assert command.startswith("riskstream replay $CACHE/tiny.csv.gz --type order") and "--budget 0.01" in command


def test_the_table_shows_the_report_numbers(panel):
    report = json.loads((panel / "tiny__default.json").read_text())
    text = (panel / "panel.md").read_text()
    main, _, alone = text.partition("Each detector alone")
    rows = [line for line in main.splitlines() if line.startswith("| Tiny")]
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].replace("\\|", "¦").strip("|").split("|")]
    assert cells[0] == "Tiny ¦ synthetic" and cells[1] == "default"
    assert cells[2] == "1,500 (15)"
    assert cells[3] == f"{report['roc_auc']:.3f}"
    assert cells[4] == f"{report['pr_auc']:.3f}"
    assert cells[5] == f"{report['precision_at_budget']:.3f}"
    assert cells[6] == f"{report['recall_at_budget']:.3f} (1.00)"  # ceiling 0.01 * 1500 / 15 = 1
    assert cells[7] == "a ¦ b: ROC AUC 0.9, AP 0.5"
    assert "loo (= default: nothing tuned)" in rows[1] and rows[1].endswith("| ″ |")
    # the second table: each detector of the defaults alone, beside the ensemble
    head = next(line for line in alone.splitlines() if line.startswith("| stream (default)"))
    names = [c.strip() for c in head.strip("|").split("|")][2:]
    assert names == sorted(report["detectors"]) and "hst" in names
    row = next(line for line in alone.splitlines() if line.startswith("| Tiny"))
    cells = [c.strip() for c in row.replace("\\|", "¦").strip("|").split("|")]
    assert cells[1] == f"{report['roc_auc']:.3f} / {report['pr_auc']:.3f}"
    hst = report["detectors"]["hst"]
    assert cells[2 + names.index("hst")] == f"{hst['roc_auc']:.3f} / {hst['pr_auc']:.3f}"


def test_a_candidates_replay_leaves_the_standing_table_alone(panel, tmp_path):
    standing = (panel / "panel.md").read_text()
    (tmp_path / "streams.toml").write_text(STREAMS_TOML)
    (tmp_path / "cand.toml").write_text("[detectors.zscore]\nclip = 3.0\n")
    run.main(["--streams", str(tmp_path / "streams.toml"), "--cache", str(panel.parent / "cache"), "--results",
              str(panel), "--tuning", str(tmp_path / "no-tuning.toml"), "--config", str(tmp_path / "cand.toml"),
              "--no-leave-one-out"])
    assert (panel / "panel.md").read_text() == standing
    cand = (panel / "panel__default__cand.md").read_text()
    assert "| cand |" in cand and (panel / "tiny__cand.json").exists()


def test_table_formatting_of_protocol_nab_and_ceiling(tmp_path):
    """Without replaying: a scored subset (the handbook protocol) shows its own AUC/AP and marks P/R; NAB shows
    its score; the recall ceiling is budget x events / positives."""
    (tmp_path / "h__default.json").write_text(json.dumps({
        "events": 1000, "positives": 100, "labelled_events": 1000, "roc_auc": 0.1, "pr_auc": 0.2,
        "precision_at_budget": 0.25, "recall_at_budget": 0.0125, "alerts": 5,
        "eval": {"handbook_protocol": {"known_from": "2018-07-25", "events": 300, "positives": 7,
                                       "roc_auc": 0.8766, "pr_auc": 0.4321}}}))
    (tmp_path / "n__default.json").write_text(json.dumps(
        {"rate": {"points": 42, "profiles": {"standard": {"score": 67.994}}}}))
    streams = [{"name": "h", "title": "H", "kind": "replay"},
               {"name": "n", "title": "N", "kind": "nab", "published": [{"model": "m", "nab_standard": 70.1}]}]
    text = run.table(streams, tmp_path, ["default"], 0.005)
    assert "| H | default | 1,000; scored 300 (7) | 0.877 | 0.432 | 0.250 † | 0.013 † (0.05) | — |" in text
    assert "| N | default | 42 points | NAB standard **67.99** | — | — | — | m: NAB 70.1 |" in text


def test_nab_leave_one_out_is_the_rate_detector_cross_validated_by_category(tmp_path):
    """NAB's loo row is `riskstream nab --grid`: the score with each category's parameters chosen on the others,
    not the in-sample default's."""
    (tmp_path / "n__default.json").write_text(json.dumps(
        {"rate": {"points": 42, "profiles": {"standard": {"score": 67.994}}}}))
    (tmp_path / "n__loo.json").write_text(json.dumps(
        {"rate": {"points": 42, "profiles": {"standard": {"score": 67.994}}},
         "cross_validation": {"parameters_held_out": {"standard": {"score": 67.004}}}}))
    streams = [{"name": "n", "title": "N", "kind": "nab"}]
    text = run.table(streams, tmp_path, ["default", "loo"], 0.005)
    assert "| N | default | 42 points | NAB standard **67.99** |" in text
    assert "| N | loo (each category with the parameters chosen on the other six) | 42 points | NAB standard " \
           "**67.00** |" in text
    cmd = run.nab_command(run.RESULTS / "nab__loo.json", None, run.NAB_GRID)
    assert cmd[cmd.index("--grid") + 1] == "bench/nab/grid.toml" and run.NAB_GRID.is_file()
    assert "--grid" not in run.nab_command(run.RESULTS / "nab__default.json", None)


def test_a_leave_one_out_equal_to_the_defaults_says_whether_anything_was_tuned(tmp_path):
    """A held-out stream whose picks on the other streams are the defaults' is "the same picks"; one with no pick
    (nothing tuned, or NAB) is "nothing tuned"."""
    report = {"events": 10, "positives": 1, "labelled_events": 10, "roc_auc": 0.9, "pr_auc": 0.5,
              "precision_at_budget": 0.1, "recall_at_budget": 1.0, "alerts": 1}
    for name in ("a", "b"):
        (tmp_path / f"{name}__default.json").write_text(json.dumps(report))
    (tmp_path / "a__loo.json").write_text(json.dumps({"same_as": "default", "picks": {"x.y": 1.0}, "why": "..."}))
    (tmp_path / "b__loo.json").write_text(json.dumps({"same_as": "default", "why": "nothing is tuned"}))
    streams = [{"name": "a", "title": "A", "kind": "replay"}, {"name": "b", "title": "B", "kind": "replay"}]
    text = run.table(streams, tmp_path, ["default", "loo"], 0.1)
    assert "| A | loo (= default: the same picks) | 10 (1) | 0.900 |" in text
    assert "| B | loo (= default: nothing tuned) | 10 (1) | 0.900 |" in text


def test_fetch_checks_the_git_blob_id():
    assert fetch.git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # `git hash-object`


def test_fraud_data_converter_sorts_by_purchase_time_and_keeps_the_ip():
    raw = ("\ufeffuser_id,signup_time,purchase_time,purchase_value,device_id,source,browser,sex,age,ip_address,class\n"
           "1,2/24/2015 22:55,4/18/2015 2:47,34,D1,SEO,Chrome,M,39,732758368.8,0\n"
           "2,1/1/2015 0:00,1/1/2015 0:00,9,D2,Ads,Safari,F,20,5.0,1\n"
           " , , , , , , , , , , \n").encode()
    header, rows = fetch.convert_fraud_data(raw)
    assert header[:6] == ["ts", "user_id", "account_created_ts", "amount", "device_id", "ip"]
    assert [r[1] for r in rows] == ["2", "1"]
    assert rows[1][:6] == ["2015-04-18T02:47:00Z", "1", "2015-02-24T22:55:00Z", "34", "D1", "732758368"]
    assert rows[0][-1] == "1"


def test_a_label_delay_reaches_every_stream_without_its_own(tmp_path):
    plain = {"name": "p", "kind": "replay", "args": ["--type", "order"]}
    own = {"name": "h", "kind": "replay", "args": ["--label-delay", "7d", "--label-every", "1h"]}
    cmd = run.replay_command(plain, tmp_path / "p.csv", None, 0.005, tmp_path / "r.json", "1h", "10m")
    i = cmd.index("--label-delay")
    assert cmd[i:i + 4] == ["--label-delay", "1h", "--label-every", "10m"]
    cmd = run.replay_command(own, tmp_path / "h.csv", None, 0.005, tmp_path / "r.json", "1h", "10m")
    assert cmd.count("--label-delay") == 1 and cmd[cmd.index("--label-delay") + 1] == "7d"
    assert "--label-delay" not in run.replay_command(plain, tmp_path / "p.csv", None, 0.005, tmp_path / "r.json")


def _fake_results(results: Path, label: str, rocs: dict[str, dict[float, float]]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    for name, by_value in rocs.items():
        for value, roc in by_value.items():
            (results / f"{name}__{label}-{value:g}.json").write_text(json.dumps({"roc_auc": roc, "pr_auc": 0.1}))


def test_the_panel_rule_moves_while_the_mean_gains_and_leave_one_out_ignores_the_held_out_stream(tmp_path):
    tuned = {"key": "ensemble.weights.hst", "label": "w", "values": [1.0, 0.5, 0.25], "min_gain": 0.001}
    streams = [{"name": n, "kind": "replay"} for n in ("a", "b", "c")] + [{"name": "nab", "kind": "nab"}]
    # a and b gain a little at 0.5 and nothing after; c gains a lot at every step (one stream's quirk)
    _fake_results(tmp_path, "w", {"a": {1.0: 0.80, 0.5: 0.802, 0.25: 0.802},
                                  "b": {1.0: 0.70, 0.5: 0.702, 0.25: 0.7015},
                                  "c": {1.0: 0.60, 0.5: 0.70, 0.25: 0.80}})
    pick, means = run.choose(tuned, streams, tmp_path)  # NAB has no result and no vote
    assert pick == 0.25 and [v for v, _ in means] == [1.0, 0.5, 0.25]
    assert means[0][1] == pytest.approx((0.80 + 0.70 + 0.60) / 3)
    # without c, 0.5 gains 0.002 over 1.0 and 0.25 loses 0.00025: the others pick 0.5 for c
    loo = run.leave_one_out_config(streams[2], [streams[0], streams[1], streams[3]], tmp_path, [tuned])
    assert loo["same_as"] == "w-0.5" and "ensemble.weights.hst = 0.5" in loo["why"]
    # a held out: b and c still gain at each step
    assert run.leave_one_out_config(streams[0], streams[1:], tmp_path, [tuned])["same_as"] == "w-0.25"
    # a value that lifts the mean through one stream while another falls beyond the panel's tolerance stops the
    # walk (ROC AUC -0.005 or AP -5 % of the first value's): one stream's quirk does not make a default
    quirk = {**tuned, "label": "q"}
    _fake_results(tmp_path, "q", {"a": {1.0: 0.80, 0.5: 0.79, 0.25: 0.79}, "b": {1.0: 0.70, 0.5: 0.70, 0.25: 0.70},
                                  "c": {1.0: 0.60, 0.5: 0.75, 0.25: 0.76}})
    assert run.choose(quirk, streams, tmp_path)[0] == 1.0
    (tmp_path / "a__q-0.5.json").write_text(json.dumps({"roc_auc": 0.796, "pr_auc": 0.1}))  # within -0.005
    assert run.choose(quirk, streams, tmp_path)[0] == 0.5
    (tmp_path / "a__q-0.5.json").write_text(json.dumps({"roc_auc": 0.80, "pr_auc": 0.094}))  # AP -6 %
    assert run.choose(quirk, streams, tmp_path)[0] == 1.0
    # a gain below min_gain stops the walk
    assert run.choose({**tuned, "min_gain": 0.05}, streams[:2], tmp_path)[0] == 1.0
    # NAB reads no detector setting: its leave-one-out result is the default's
    assert run.leave_one_out_config(streams[3], streams[:3], tmp_path, [tuned]) is None
    # two tuned settings, each picked away from its default on the other streams: a configuration to replay
    other = {"key": "ensemble.calibration_window", "label": "cw", "values": [20000, 50000], "min_gain": 0.001}
    _fake_results(tmp_path, "cw", {"a": {20000: 0.80, 50000: 0.81}, "b": {20000: 0.70, 50000: 0.71},
                                   "c": {20000: 0.60, 50000: 0.60}})
    both = run.leave_one_out_config(streams[2], [streams[0], streams[1]], tmp_path, [tuned, other])
    assert both["config"] == {"ensemble.weights.hst": 0.5, "ensemble.calibration_window": 50000}
    assert "same_as" not in both
    cfg = run.loo_config_file(streams[2], both["config"], tmp_path)
    import tomllib

    assert tomllib.loads(cfg.read_text()) == {"ensemble": {"weights": {"hst": 0.5}, "calibration_window": 50000}}
    # a pick equal to the default value is the default's result
    at_default = {**other, "values": [run.default_value("ensemble.calibration_window")]}
    assert run.leave_one_out_config(streams[2], streams[:2], tmp_path, [at_default])["same_as"] == "default"
    # a missing candidate result is named, not guessed
    (tmp_path / "b__w-0.25.json").unlink()
    with pytest.raises(run.MissingResult, match="b__w-0.25.json"):
        run.choose(tuned, streams, tmp_path)


def test_candidate_config_lays_one_value_over_the_defaults(tmp_path):
    import tomllib

    tuned = {"key": "ensemble.weights.hst", "label": "hst-weight", "values": [0.0625], "min_gain": 0.001}
    path = run.candidate_config(tuned, 0.0625, tmp_path)
    assert path.name == "hst-weight-0.0625.toml"
    assert tomllib.loads(path.read_text()) == {"ensemble": {"weights": {"hst": 0.0625}}}
    # the shipped tuning file parses, and its first value is where the walk starts
    shipped = run.load_tuning()
    assert shipped and all(t["values"] and t["min_gain"] > 0 for t in shipped)


def test_settings_of_one_table_share_its_header():
    import tomllib

    # two picks under [ensemble.weights]: TOML refuses the table twice, so the file must name it once
    text = run.settings_toml({"ensemble.weights.hst": 0.25, "ensemble.calibration_window": 50000,
                              "ensemble.weights.coldstart": 0.5}, "picks")
    assert text.startswith("# picks\n") and text.count("[ensemble.weights]") == 1
    assert tomllib.loads(text) == {"ensemble": {"weights": {"hst": 0.25, "coldstart": 0.5},
                                                "calibration_window": 50000}}


def _scores(cache: Path, run_name: str, y, risk) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = run.scores_file(cache, run_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"event_id": [f"e{i}" for i in range(len(y))],
                             "label": pa.array([None if v is None else int(v) for v in y], pa.int8()),
                             "risk": pa.array(risk, pa.float64()), "alerted": [False] * len(y)}), path)


def test_a_candidate_is_vetoed_by_a_loss_beyond_the_tolerance_only_when_it_is_beyond_the_noise(tmp_path):
    import numpy as np

    from stream.eval.metrics import average_precision, roc_auc

    results, cache = tmp_path / "results", tmp_path / "cache"
    results.mkdir()
    rng = np.random.default_rng(0)
    streams = [{"name": n, "kind": "replay"} for n in ("big", "rare")] + [{"name": "nab", "kind": "nab"}]

    def put(name, label, y, risk):
        known = [i for i, v in enumerate(y) if v is not None]
        yk, rk = np.array([y[i] for i in known]), np.array([risk[i] for i in known])
        (results / f"{name}__{label}.json").write_text(json.dumps(
            {"roc_auc": roc_auc(yk, rk), "pr_auc": average_precision(yk, rk), "precision_at_budget": 0.5}))
        _scores(cache, f"{name}__{label}", y, risk.tolist())

    # "big": 20,000 events, 400 positives, the candidate clearly worse; "rare": 12 positives among 20,000, the
    # candidate ranks its best-ranked one in the middle: a loss beyond the tolerance, carried by one event (a resample
    # without it sees no difference), so within the noise
    y = (np.arange(20_000) % 50 == 0).astype(int)
    base = rng.normal(size=20_000) + 2.5 * y
    put("big", "default", list(y), base)
    put("big", "cand", list(y), base - 1.2 * y * (rng.random(20_000) < 0.5))
    yr = np.zeros(20_000, dtype=int)
    yr[rng.choice(20_000, 12, replace=False)] = 1
    ylab = [None if i % 97 == 0 else int(v) for i, v in enumerate(yr)]  # some events unlabelled
    base_r = rng.normal(size=20_000) + 3.0 * yr
    put("rare", "default", ylab, base_r)
    moved = base_r.copy()
    top = max((i for i in np.flatnonzero(yr) if i % 97), key=lambda i: base_r[i])  # the best-ranked positive
    moved[top] = float(np.median(base_r))
    put("rare", "cand", ylab, moved)
    d = run.decide(streams, results, cache, "cand", rounds=200)
    big, rare = d["streams"]
    assert big["d_roc_auc"] < -run.ROC_AUC_TOLERANCE and big["bootstrap"]["d_roc_auc_hi"] < 0 and big["veto"]
    assert rare["d_ap"] < -run.AP_TOLERANCE * rare["ap"][0] and rare["d_roc_auc"] < -run.ROC_AUC_TOLERANCE
    assert rare["bootstrap"]["d_ap_hi"] == rare["bootstrap"]["d_roc_auc_hi"] == 0.0 and not rare["veto"]
    assert rare["bootstrap"]["positives"] == int(yr[[i for i in range(20_000) if i % 97]].sum())
    assert d["vetoes"] == ["big"] and not d["adopt"]
    # without the per-event scores, the tolerance alone decides (the rule of before)
    run.scores_file(cache, "rare__cand").unlink()
    d = run.decide(streams, results, cache, "cand", rounds=200)
    assert d["vetoes"] == ["big", "rare"] and d["streams"][1]["bootstrap"] is None
    # a candidate equal to the defaults on one stream and better on the other gains and is adopted
    put("rare", "cand", ylab, base_r)
    put("big", "cand", list(y), base + 0.5 * y)
    d = run.decide(streams, results, cache, "cand", rounds=200)
    assert d["adopt"] and d["gains"] and not d["vetoes"] and d["mean_d_roc_auc"] > 0
    text = run.decision_table(d)
    assert "**adopt**" in text and "| big |" in text and "| nab |" not in text
    # the same, but the gain below both thresholds: not adopted
    put("big", "cand", list(y), base + 1e-6 * y)
    d = run.decide(streams, results, cache, "cand", rounds=50)
    assert not d["gains"] and not d["adopt"] and "keep the defaults" in run.decision_table(d)
    with pytest.raises(run.MissingResult, match="big__other.json"):
        run.decide(streams, results, cache, "other")


def test_a_stream_with_an_invented_clock_counts_by_its_phases_means(tmp_path):
    import numpy as np

    from stream.eval.metrics import average_precision, roc_auc

    results, cache = tmp_path / "results", tmp_path / "cache"
    results.mkdir()
    rng = np.random.default_rng(1)
    kdd = {"name": "kdd", "kind": "replay", "clock_offsets": [1800, 3600]}
    y = (np.arange(20_000) % 50 == 0).astype(int)
    base = rng.normal(size=20_000) + 2.0 * y

    def put(label, risk):
        (results / f"kdd__{label}.json").write_text(json.dumps(
            {"roc_auc": roc_auc(y, risk), "pr_auc": average_precision(y, risk), "precision_at_budget": 0.5}))
        _scores(cache, f"kdd__{label}", list(y), risk.tolist())

    # the defaults rank the positives well at phase 0 only (the clock's accident); the candidate is steady
    lucky = base + 1.5 * y
    put("default", lucky)
    put("default+1800s", base - 0.5 * y)
    put("default+3600s", base - 0.5 * y)
    for label in ("cand", "cand+1800s", "cand+3600s"):
        put(label, base + 0.5 * y)
    assert run.phase_labels(kdd, "cand") == ["cand", "cand+1800s", "cand+3600s"]
    d = run.decide([kdd], results, cache, "cand", rounds=100)
    (row,) = d["streams"]
    assert row["phases"] == 3
    want = np.mean([roc_auc(y, r) for r in (lucky, base - 0.5 * y, base - 0.5 * y)])
    assert row["roc_auc"][0] == pytest.approx(want) and row["d_roc_auc"] > 0  # phase 0 alone would show a loss
    assert roc_auc(y, base + 0.5 * y) < roc_auc(y, lucky)
    assert not row["veto"] and d["adopt"]
    assert "| kdd (mean of 3 clock phases) |" in run.decision_table(d)
    # the other way round: a loss at every phase, beyond the noise at each, vetoes
    for label in ("cand", "cand+1800s", "cand+3600s"):
        put(label, base - 1.5 * y)
    d = run.decide([kdd], results, cache, "cand", rounds=100)
    assert d["vetoes"] == ["kdd"]
    # a phase not replayed is asked for, not skipped
    (results / "kdd__cand+3600s.json").unlink()
    with pytest.raises(run.MissingResult, match=r"kdd__cand\+3600s.json is missing"):
        run.decide([kdd], results, cache, "cand", rounds=100)


def test_the_runner_replays_each_clock_phase_from_a_shifted_copy(tmp_path):
    cache, results = tmp_path / "cache", tmp_path / "results"
    cache.mkdir()
    results.mkdir()
    _tiny_stream(cache / "tiny.csv.gz", n=800)
    stream = {"name": "tiny", "kind": "replay", "source": "github:x/y", "convert": "none", "file": "tiny.csv.gz",
              "args": ["--type", "order", "--map", "ts=ts,amount=amount,label=label", "--set",
                       "user_id=u,merchant_id=m", "--features", "none"], "clock_offsets": [3600]}
    run.run_stream(stream, "default", None, budget=0.01, cache=cache, data=None, results=results, phases=True)
    shifted = cache / "tiny+3600s.csv.gz"
    with gzip.open(shifted, "rt") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["ts", "amount", "label"] and rows[1][0] == "3600" and rows[2][0] == "3660"
    a = json.loads((results / "tiny__default.json").read_text())
    b = json.loads((results / "tiny__default+3600s.json").read_text())
    assert a["events"] == b["events"] == 800 and a["positives"] == b["positives"]
    command = json.loads((results / "tiny__default+3600s.command.json").read_text())["command"]
    assert "$CACHE/tiny+3600s.csv.gz" in command and "tiny__default+3600s.json" in command
