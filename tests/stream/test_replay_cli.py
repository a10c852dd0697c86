"""`riskstream replay / simulate / demo / config` through the real click CLI."""

from __future__ import annotations

import gzip
import json

import click
import orjson
import pytest
from click.testing import CliRunner

from sinks.deadletter import read_dead_letters
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.events import encode
from stream.sim import SimConfig, simulate


@pytest.fixture(scope="module")
def stream_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "s.jsonl.gz"
    res = CliRunner().invoke(cli, ["simulate", "--events", "4000", "--seed", "5", "--out", str(path)])
    assert res.exit_code == 0, res.output
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_simulate_writes_the_requested_stream(stream_file):
    with gzip.open(stream_file, "rb") as fh:
        lines = fh.read().splitlines()
    expected = [encode(e) for e in simulate(SimConfig(events=4000, seed=5))]
    assert lines == expected


def test_replay_report_and_byte_identical_alerts(stream_file, tmp_path):
    reports = []
    outs = []
    for run in ("a", "b"):
        out, rep = tmp_path / f"{run}.jsonl", tmp_path / f"{run}.json"
        res = invoke("replay", stream_file, "--budget", "0.02", "--alerts-out", out, "--report", rep, "-q",
                     "--config", _small_history(tmp_path))
        assert res.exit_code == 0, res.output
        reports.append(json.loads(rep.read_text()))
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0], "same input and config => byte-identical, non-empty alerts file"
    r = reports[0]
    for key in ("events", "invalid", "alerts", "alerts_per_1k", "roc_auc", "pr_auc", "budget", "precision_at_budget",
                "recall_at_budget", "per_scenario_recall", "events_per_second", "config_hash"):
        assert key in r, key
    assert r["events"] + r["label_events"] == 4000 and r["invalid"] == 0
    assert r["alerts"] == len(read_alerts(tmp_path / "a.jsonl"))
    assert 0.5 <= r["roc_auc"] <= 1.0


def _small_history(tmp_path):
    cfg = tmp_path / "small.toml"
    cfg.write_text("[ensemble]\nmin_history = 100\n")
    return cfg


GOOD = {"type": "order", "event_id": "g{}", "ts": "2024-01-01T00:00:{:02d}Z", "user_id": "u1", "order_id": "o{}",
        "amount": 10.0, "currency": "EUR", "merchant_id": "m1"}


def good(i):
    d = dict(GOOD)
    d["event_id"], d["order_id"], d["ts"] = f"g{i}", f"o{i}", f"2024-01-01T00:00:{i:02d}Z"
    return orjson.dumps(d)


GARBAGE = [
    b"{not json",
    b'{"type":"order"}',
    b'{"type":"order","event_id":"x","ts":"2024-01-01T00:00:00Z","user_id":"u","order_id":"o","amount":"ten",'
    b'"currency":"EUR","merchant_id":"m"}',
    b'{"type":"order","event_id":"x","ts":"2024-01-01T00:00:00Z","user_id":"u","order_id":"o","amount":-5,'
    b'"currency":"EUR","merchant_id":"m"}',
    b'{"type":"order","event_id":"x","ts":"2024-01-01T00:00:00Z","user_id":"u","order_id":"o","amount":NaN,'
    b'"currency":"EUR","merchant_id":"m"}',
    b'{"type":"login","event_id":"' + b"A" * 1_000_000 + b'","ts":0,"user_id":"u","success":true}',
    b'{"type":"refund","event_id":"x"}',
    b"\xff\xfe\x00garbage",
    b"[1,2,3]",
]


def test_garbage_is_counted_and_dead_lettered_with_reason_and_bytes(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = []
    for i, bad in enumerate(GARBAGE):
        lines.append(good(i))
        lines.append(bad)
    path.write_bytes(b"\n".join(lines) + b"\n")
    dl, rep = tmp_path / "dl.jsonl", tmp_path / "r.json"
    res = invoke("replay", path, "--dead-letters", dl, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    r = json.loads(rep.read_text())
    assert r["events"] == len(GARBAGE) and r["invalid"] == len(GARBAGE)
    letters = read_dead_letters(dl)
    assert [d.raw for d in letters] == GARBAGE
    assert all(d.reason for d in letters)
    reasons = [d.reason for d in letters]
    assert reasons[2].startswith("amount:") and reasons[3] == "amount: must be >= 0"
    assert reasons[6].startswith("type:")
    assert "larger than" in reasons[5]


def test_csv_replay_with_map_and_set(tmp_path):
    rows = ["Time,V1,V2,Amount,Class,Secret"]
    for i in range(300):
        fraud = int(i % 50 == 49)
        v1 = 9.0 if fraud else (i % 7) / 7
        rows.append(f"{i * 10},{v1},{(i % 5) / 5},{12.5 + i % 3},{fraud},{fraud}")
    path = tmp_path / "cc.csv"
    path.write_text("\n".join(rows) + "\n")
    rep = tmp_path / "r.json"
    res = invoke("replay", path, "--type", "order", "--map", "ts=Time,amount=Amount,label=Class",
                 "--set", "user_id=card,merchant_id=unknown", "--drop", "Secret", "--ts-origin",
                 "2024-01-01T00:00:00Z", "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    r = json.loads(rep.read_text())
    assert r["events"] == 300 and r["invalid"] == 0 and r["positives"] == 6


@pytest.mark.parametrize(
    "args, needle",
    [
        (["replay", "missing.jsonl"], "does not exist"),
        (["replay", "{csv}", "--map", "amount"], "--map"),
        (["replay", "{csv}", "--map", "nope=Time"], "not an event field"),
        (["replay", "{csv}", "--map", "amount=NoSuchColumn"], "NoSuchColumn"),
        (["replay", "{csv}", "--budget", "2"], "--budget"),
        (["replay", "{csv}", "--config", "{badcfg}"], "engine.budgett"),
        (["simulate", "--events", "10", "--attack", "bogus=1", "--out", "x.jsonl"], "bogus"),
        # options that do not go together: the command's own check, one line too
        (["replay", "{csv}", "--kafka"], "not both"),
        (["replay"], "nothing to replay"),
        (["replay", "{csv}", "--from-offset", "3"], "only with --kafka"),
        (["simulate", "--events", "10"], "--out is required"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, args, needle):
    csv = tmp_path / "d.csv"
    csv.write_text("Time,Amount\n1,2\n")
    badcfg = tmp_path / "bad.toml"
    badcfg.write_text("[engine]\nbudgett = 1\n")
    args = [a.format(csv=csv, badcfg=badcfg) for a in args]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert needle in res.output
    lines = res.output.splitlines()
    if args[-2:] == ["--budget", "2"]:  # click's own option check keeps click's format: usage, then one Error line
        assert len([ln for ln in lines if ln.startswith("Error:")]) == 1
    else:  # riskstream's: exactly one line, no usage block around it
        assert len(lines) == 1 and lines[0].startswith("riskstream: error: "), lines


def test_demo_runs_without_a_server(tmp_path):
    res = invoke("demo", "--events", "3000", "--dir", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    for name in ("events.jsonl.gz", "alerts.jsonl", "alerts.db", "report.json"):
        assert (tmp_path / "demo" / name).exists(), name
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["events"] > 0
    assert "ROC AUC" in res.output


def test_config_show_prints_effective_config():
    res = invoke("config", "show")
    assert res.exit_code == 0
    assert "config_hash" in res.output and "[engine]" in res.output


@pytest.mark.parametrize("command", [["config", "show"], ["run"],
                                     ["replay", "{csv}", "--type", "order", "--map", "ts=Time,amount=Amount"]])
@pytest.mark.parametrize("text, message", [
    ('[ensemble.weights]\nhst = "high"\n', "config key 'ensemble.weights.hst' must be a number >= 0, not 'high'"),
    ("[ensemble.weights]\nzscor = 1\n",
     "config key 'ensemble.weights.zscor' weighs detector 'zscor', which is not configured (did you mean 'zscore'?)"),
    ('[[detectors.rules.rules]]\nname = "r"\nwhen = "ip_login_user_1h >= 5"\n',
     "detectors.rules: rule 'r' names unknown feature 'ip_login_user_1h' (did you mean 'ip_login_users_1h'?)"),
])
def test_config_errors_are_one_line_and_exit_2_from_every_command(tmp_path, command, text, message):
    csv = tmp_path / "d.csv"
    csv.write_text("Time,Amount\n1,2\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    res = CliRunner().invoke(cli, [a.format(csv=csv) for a in command] + ["-c", str(cfg)])
    assert res.exit_code == 2 and res.output == f"riskstream: error: {message}\n"


def _options(command, path=()):
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _options(sub, (*path, name))
    else:
        for p in command.params:
            if isinstance(p, click.Option) and p.name != "help":
                yield " ".join(path), p


def test_every_option_of_every_command_has_help_text():
    missing = [f"{path} {'/'.join(p.opts)}" for path, p in _options(cli) if not (p.help or "").strip()]
    assert missing == []
