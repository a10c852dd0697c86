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
                     "--report", d / f"{name}.json")
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
