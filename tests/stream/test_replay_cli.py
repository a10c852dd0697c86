"""`riskstream replay / simulate / demo / config` through the real click CLI."""

from __future__ import annotations

import gzip
import json
import zlib

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
    err_lines = [ln for ln in res.output.splitlines() if ln.startswith("Error:")]
    assert len(err_lines) == 1


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


def test_top_0_prints_the_summary_without_an_alert_table(stream_file, tmp_path):
    rep = tmp_path / "r.json"
    res = invoke("replay", stream_file, "--budget", "0.02", "--top", "0", "--report", rep,
                 "--config", _small_history(tmp_path))
    assert res.exit_code == 0, res.output
    assert json.loads(rep.read_text())["alerts"] > 0, "alerts must have been offered to the (empty) top list"
    assert "events scored" in res.output and "alerts" in res.output
    assert "top " not in res.output


def _error_lines(res):
    return [ln for ln in res.stderr.splitlines() if ln.startswith("riskstream: error:")]


def test_a_truncated_gz_replays_what_came_before_it_and_exits_1_naming_file_and_line(stream_file, tmp_path):
    data = stream_file.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    readable = zlib.decompressobj(wbits=31).decompress(data[: len(data) // 2])
    whole_lines = readable.count(b"\n")
    assert 0 < whole_lines < 4000
    rep, out = tmp_path / "r.json", tmp_path / "alerts.jsonl"
    res = invoke("replay", cut, "--budget", "0.02", "--config", _small_history(tmp_path), "--report", rep,
                 "--alerts-out", out)
    assert res.exit_code == 1, res.output
    assert "Aborted" not in res.output and "Traceback" not in res.output
    errors = _error_lines(res)
    assert len(errors) == 1, res.stderr
    assert "cut.jsonl.gz" in errors[0] and f"line {whole_lines + 1:,}" in errors[0] and "truncated" in errors[0]
    assert "events scored" in res.output, "the summary of what was read is still printed"
    r = json.loads(rep.read_text())
    assert r["events"] + r["label_events"] == whole_lines and r["invalid"] == 0
    assert r["error"] == errors[0].removeprefix("riskstream: error: ")
    assert r["alerts"] > 0 and len(read_alerts(out)) == r["alerts"], "the alerts before the break are kept"


def test_a_file_named_gz_that_is_not_gzip_exits_1_with_one_line(tmp_path):
    fake = tmp_path / "plain.jsonl.gz"
    fake.write_bytes(good(1) + b"\n")
    res = invoke("replay", fake, "--report", tmp_path / "r.json")
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    errors = _error_lines(res)
    assert len(errors) == 1 and "plain.jsonl.gz" in errors[0] and "not gzip" in errors[0], res.stderr
    assert json.loads((tmp_path / "r.json").read_text())["events"] == 0


def test_a_jsonl_file_with_a_cut_off_last_line_dead_letters_it_and_exits_0(tmp_path):
    path = tmp_path / "cut.jsonl"
    last = good(3)[:25]
    path.write_bytes(good(1) + b"\n" + good(2) + b"\n" + last)
    dl, rep = tmp_path / "dl.jsonl", tmp_path / "r.json"
    res = invoke("replay", path, "--dead-letters", dl, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    r = json.loads(rep.read_text())
    assert r["events"] == 2 and r["invalid"] == 1 and "error" not in r
    (letter,) = read_dead_letters(dl)
    assert letter.raw == last and letter.position == 3 and "JSON" in letter.reason


def _card_csv(tmp_path, rows=200):
    path = tmp_path / "cards.csv"
    path.write_text("Time,V1,Amount,Class\n" + "".join(f"{i},{i % 7 / 7},{10 + i % 3},{int(i % 50 == 49)}\n"
                                                       for i in range(rows)))
    return path


def test_a_csv_without_map_or_type_exits_2_saying_why_and_what_to_give(tmp_path):
    path = _card_csv(tmp_path)
    rep, dl = tmp_path / "r.json", tmp_path / "dl.jsonl"
    res = invoke("replay", path, "--report", rep, "--dead-letters", dl)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    assert "nothing valid was read" in errors[0] and "type: is missing" in errors[0]
    assert "--type" in errors[0] and "--map FIELD=COLUMN" in errors[0]
    assert "dead-letter reasons" in res.stdout and "type: is missing" in res.stdout and "200" in res.stdout
    r = json.loads(rep.read_text())
    assert r["events"] == 0 and r["invalid"] == 200
    assert r["dead_letter_reasons"] == [{"reason": "type: is missing", "count": 200}]
    assert len(read_dead_letters(dl)) == 200, "nothing is lost: every record is in the dead letters"


def test_a_csv_with_type_but_no_user_column_hints_at_map_or_set(tmp_path):
    res = invoke("replay", _card_csv(tmp_path), "--type", "order", "--map", "ts=Time,amount=Amount", "-q")
    assert res.exit_code == 2, res.output
    (error,) = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert "is missing" in error and "--set" in error and "--map" in error
    assert "events scored" not in res.output, "-q: no summary, but the error still shows"


def test_the_report_counts_dead_letter_reasons_most_frequent_first(tmp_path):
    path = tmp_path / "mixed.jsonl"
    bad = [b'{"type":"refund"}'] * 3 + [b"{not json"] + [b'{"type":"order"}'] * 5
    path.write_bytes(b"\n".join([good(1), *bad, good(2)]) + b"\n")
    rep = tmp_path / "r.json"
    res = invoke("replay", path, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    reasons = json.loads(rep.read_text())["dead_letter_reasons"]
    assert [r["count"] for r in reasons] == [5, 3, 1]
    assert reasons[0]["reason"] == "event_id: is missing"
    assert reasons[1]["reason"] == "type: must be one of order, login, label, not 'refund'"
    assert reasons[2]["reason"].startswith("$: is not valid JSON")


@pytest.mark.parametrize("name, content", [("empty.jsonl", b""), ("blank.jsonl.gz", gzip.compress(b"\n\n")),
                                           ("header.csv", b"Time,Amount\n")])
def test_an_empty_input_warns_in_one_line_writes_the_report_and_exits_0(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    rep = tmp_path / "r.json"
    res = invoke("replay", path, "--report", rep, "-q")
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("riskstream: warning:")]
    assert len(warnings) == 1 and name in warnings[0] and "no records" in warnings[0], res.stderr
    r = json.loads(rep.read_text())
    assert r["events"] == r["invalid"] == r["label_events"] == 0


def test_progress_of_a_gz_replay_is_compressed_bytes_read_of_the_compressed_size(stream_file):
    import io

    from rich.console import Console

    from stream.config import load_settings
    from stream.eval.report import progress
    from stream.replay import replay
    from stream.sources import FileSource

    size = stream_file.stat().st_size
    source = FileSource([stream_file], batch_size=200)
    seen = []
    out = io.StringIO()
    with progress(False, "replay", total_bytes=size, source=source,
                  console=Console(file=out, force_terminal=True, width=200)) as advance:
        def on_batch(batch, outcome):
            seen.append(source.bytes_read)
            advance(batch, outcome)

        replay(source, load_settings(None), on_batch=on_batch)
    assert len(seen) == 20 and seen == sorted(seen) and 0 < seen[0] < size
    assert advance.task.total == size and advance.task.completed == size
    assert advance.task.fields["events"] == 4000
    text = out.getvalue()
    assert "100%" in text and "events/s" in text and "4,000 events" in text


def test_the_demo_hint_compares_two_reports_with_every_metric_on_both_sides(tmp_path):
    import shlex

    res = invoke("demo", "--events", "3000", "--dir", tmp_path / "demo")
    assert res.exit_code == 0, res.output
    hinted = [ln.split("riskstream ", 1)[1].split("#")[0] for ln in res.stderr.splitlines()
              if ln.lstrip().startswith(("Next: riskstream ", "riskstream "))]
    assert [h.split()[0] for h in hinted] == ["replay", "compare"], res.stderr
    assert invoke(*shlex.split(hinted[0])).exit_code == 0
    cmp_json = tmp_path / "cmp.json"
    shown = invoke(*shlex.split(hinted[1]), "--out", cmp_json)
    assert shown.exit_code == 0, shown.output
    demo_report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert demo_report["eval"]["eval_events"] == demo_report["events"] > 0
    reports = [demo_report, json.loads((tmp_path / "demo" / "report-0.5pct.json").read_text())]
    for row in json.loads(cmp_json.read_text())["rows"]:
        for report, value in zip(reports, row["values"], strict=True):
            if value is None:  # shown as "-": only a scenario this budget never caught has no delay
                scenario = row["metric"].removeprefix("median delay ").removesuffix(" (s)")
                assert row["metric"].startswith("median delay "), row
                assert report["eval"]["detection_delay"][scenario]["detected"] == 0, row
    assert any(row["metric"].startswith("card precision@100") for row in json.loads(cmp_json.read_text())["rows"])
