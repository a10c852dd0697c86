"""`riskstream compare`: two configurations replayed on the same stream, side by side, through the real CLI."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stream.cli import cli
from stream.cli.compare import compare_reports
from stream.errors import ConfigError


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Reports of one simulated stream under the defaults and with the rules pack off, and of another stream."""
    d = tmp_path_factory.mktemp("cmp")
    for seed in (5, 6):
        res = invoke("simulate", "--events", "4000", "--seed", seed, "--out", d / f"s{seed}.jsonl.gz")
        assert res.exit_code == 0, res.output
    (d / "base.toml").write_text("[ensemble]\nmin_history = 100\n")
    (d / "norules.toml").write_text("[ensemble]\nmin_history = 100\n[detectors.rules]\nrules = []\n")
    out = {}
    for name, stream, cfg in (("a", "s5", "base"), ("b", "s5", "norules"), ("other", "s6", "base")):
        res = invoke("replay", d / f"{stream}.jsonl.gz", "--budget", "0.02", "-q", "-c", d / f"{cfg}.toml",
                     "--report", d / f"{name}.json", "--scores-out", d / f"{name}.parquet")
        assert res.exit_code == 0, res.output
        out[name] = d / f"{name}.json"
    return out


def test_compare_shows_each_metric_and_its_difference_to_the_first(reports, tmp_path):
    res = invoke("compare", reports["a"], reports["b"], "--out", tmp_path / "cmp.json")
    assert res.exit_code == 0, res.output
    a, b = (json.loads(reports[k].read_text()) for k in ("a", "b"))
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["reports"] == [str(reports["a"]), str(reports["b"])]
    rows = {r["metric"]: r for r in cmp["rows"]}
    for metric, key in (("recall at budget", "recall_at_budget"), ("precision at budget", "precision_at_budget"),
                        ("PR AUC (average precision)", "pr_auc"), ("alerts", "alerts")):
        assert rows[metric]["values"] == [a[key], b[key]]
        assert rows[metric]["delta"] == [None, pytest.approx(b[key] - a[key])]
    assert a["config_hash"] != b["config_hash"]
    assert [a["config_hash"] in rows["config"]["values"][0], b["config_hash"] in rows["config"]["values"][1]] == [
        True, True]
    assert set(a["detectors"]) >= {"hst", "zscore", "rules"}
    for d in a["detectors"]:  # each detector alone, the signal it sees on this stream
        assert rows[f"{d} alone: PR AUC"]["values"] == [a["detectors"][d]["pr_auc"], b["detectors"][d]["pr_auc"]]
    assert a["detectors"]["rules"]["pr_auc"] > b["detectors"]["rules"]["pr_auc"]  # an empty pack sees nothing
    for s, recall in b["per_scenario_recall"].items():  # every scenario of the stream has its row
        assert rows[f"recall {s}"]["values"][1] == recall
    assert "differences to the first report" in res.output and "recall at budget" in res.output


def test_reports_of_different_streams_are_refused_naming_what_differs(reports):
    res = invoke("compare", reports["a"], reports["other"])
    assert res.exit_code == 2
    assert "not of the same stream" in res.output and str(reports["other"]) in res.output


def test_a_report_without_an_evaluation_section_still_compares(reports, tmp_path):
    """`riskstream demo` writes a report with no `eval` section: the same stream all the same."""
    bare = json.loads(reports["a"].read_text())
    del bare["eval"]
    (tmp_path / "bare.json").write_text(json.dumps(bare))
    res = invoke("compare", tmp_path / "bare.json", reports["b"], "--out", tmp_path / "cmp.json")
    assert res.exit_code == 0, res.output
    rows = {r["metric"]: r for r in json.loads((tmp_path / "cmp.json").read_text())["rows"]}
    assert rows["recall at budget"]["values"][0] == bare["recall_at_budget"]


def test_a_file_that_is_not_a_report_is_refused(reports, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"roc_auc": 0.9}')
    res = invoke("compare", reports["a"], bad)
    assert res.exit_code == 2 and f"{bad}: not a riskstream replay report" in res.output
    res = invoke("compare", reports["a"], tmp_path / "missing.json")
    assert res.exit_code == 2 and "cannot read" in res.output
    with pytest.raises(ConfigError, match="at least two"):
        compare_reports([json.loads(reports["a"].read_text())], ["a"])


def test_scores_give_each_difference_its_bootstrap_interval(reports, tmp_path):
    scores = {k: v.with_suffix(".parquet") for k, v in reports.items()}
    res = invoke("compare", reports["a"], reports["b"], reports["a"], "--scores", scores["a"], "--scores",
                 scores["b"], "--scores", scores["a"], "--rounds", 200, "--out", tmp_path / "cmp.json")
    assert res.exit_code == 0, res.output
    rows = {r["metric"]: r for r in json.loads((tmp_path / "cmp.json").read_text())["rows"]}
    names = ["Δ PR AUC, 95 % interval", "Δ ROC AUC, 95 % interval", "Δ precision at budget, 95 % interval"]
    order = [r["metric"] for r in json.loads((tmp_path / "cmp.json").read_text())["rows"]]
    assert order[order.index("ROC AUC") + 1 : order.index("ROC AUC") + 4] == names
    for name, metric in zip(names, ("PR AUC (average precision)", "ROC AUC", "precision at budget"), strict=True):
        base, b_iv, same_iv = rows[name]["values"]
        assert base is None and same_iv == "[+0.0000, +0.0000]", "a configuration against itself: no difference"
        lo, hi = (float(x) for x in b_iv.strip("[]").split(", "))
        assert lo <= hi
        d = rows[metric]["delta"][1]
        assert lo - 1e-12 <= d <= hi + 1e-12, (name, d, lo, hi)  # the difference measured lies inside
    assert "Δ ROC AUC" in res.output


def test_scores_that_are_not_their_reports_are_refused(reports):
    scores = {k: v.with_suffix(".parquet") for k, v in reports.items()}
    with pytest.raises(ConfigError, match="1 file\\(s\\) for 2 reports"):
        compare_reports([json.loads(reports[k].read_text()) for k in "ab"], ["a", "b"], scores=[scores["a"]])
    same = [json.loads(reports[k].read_text()) for k in ("a", "b")]
    with pytest.raises(ConfigError, match="is not the scores of b: its PR AUC"):
        compare_reports(same, ["a", "b"], scores=[scores["a"], scores["a"]], rounds=100)
    other = json.loads(reports["other"].read_text())
    with pytest.raises(ConfigError, match="do not hold the same events"):
        # (the two streams' reports are refused first; compare their scores as if the reports matched)
        compare_reports([same[0], {**same[0], "pr_auc": other["pr_auc"]}], ["a", "o"],
                        scores=[scores["a"], scores["other"]], rounds=100)
    res = invoke("compare", reports["a"], reports["b"], "--scores", reports["a"], "--scores", scores["b"])
    assert res.exit_code != 0 and "not a riskstream replay --scores-out file" in res.output
