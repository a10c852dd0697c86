"""Fuzzing the input path: broken records mixed into a real stream never crash a replay, each one reaches the
dead-letter file once with its reason and its original bytes, and the alerts on the good records do not move.

CI runs it at a small size; ``bench/faults/fuzz.py`` runs the same check on 100,000 broken records (and through
``riskstream run``) and records the figures in ``bench/faults/README.md``.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from sinks.deadletter import read_dead_letters
from sinks.jsonl import read_alerts
from stream.cli import cli
from stream.events import decode, encode
from stream.sim import SimConfig, simulate
from stream.sim.junk import KINDS, junk_records, mutate, split_refused

EVENTS = 4_000
JUNK = 4_000


@pytest.fixture(scope="module")
def good_events():
    return list(simulate(SimConfig(events=EVENTS, seed=23)))


@pytest.fixture(scope="module")
def junk(good_events):
    return list(junk_records(good_events, n=JUNK, seed=5))


def _replay(path: Path, out: Path) -> tuple[object, list, list]:
    alerts, dead = out / "alerts.jsonl", out / "dead.jsonl"
    res = CliRunner().invoke(cli, ["replay", str(path), "-q", "--budget", "0.02", "--alerts-out", str(alerts),
                                   "--dead-letters", str(dead), "--report", str(out / "r.json")])
    return res, read_alerts(alerts) if alerts.exists() else [], read_dead_letters(dead) if dead.exists() else []


def test_every_kind_of_junk_is_generated_deterministically_and_most_of_it_is_refused(good_events, junk):
    assert junk == list(junk_records(good_events, n=JUNK, seed=5))  # same seed, same records
    assert all(b"\n" not in r and b"\r" not in r and r.strip() for r in junk)
    refused, accepted = split_refused(junk)
    assert len(refused) > 0.85 * JUNK
    r = random.Random(0)
    for kind in KINDS:  # each kind yields records the decoder refuses (some kinds only sometimes)
        made = [mutate(r, kind, good_events[i]) for i in range(40)]
        assert split_refused(made)[0], kind
    for raw in accepted:  # what passes is a well-formed event: finite numbers, text fields
        e = decode(raw)
        assert math.isfinite(e.ts)


def test_junk_mixed_into_a_stream_is_dead_lettered_once_with_its_bytes_and_moves_no_alert(
        good_events, junk, tmp_path):
    refused, _ = split_refused(junk)
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"".join(encode(e) + b"\n" for e in good_events))
    lines = [encode(e) for e in good_events]
    r = random.Random(1)
    for raw in refused:  # anywhere in the file, between good records
        lines.insert(r.randrange(len(lines) + 1), raw)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_bytes(b"".join(line + b"\n" for line in lines))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()

    res_clean, alerts_clean, dead_clean = _replay(clean, tmp_path / "a")
    res_mixed, alerts_mixed, dead_mixed = _replay(mixed, tmp_path / "b")
    assert res_clean.exit_code == 0, res_clean.output
    assert res_mixed.exit_code == 0, res_mixed.output  # no crash, whatever the junk
    assert dead_clean == []
    # each refused record once, with its original bytes, and a reason that names a field or the record
    assert Counter(d.raw for d in dead_mixed) == Counter(refused)
    assert all(d.reason and (d.reason.startswith("$") or ":" in d.reason) for d in dead_mixed)
    report = orjson.loads((tmp_path / "b" / "r.json").read_bytes())
    assert report["invalid"] == len(refused) and report["events"] == EVENTS - sum(e.type == "label"
                                                                                  for e in good_events)
    # the good records' alerts are exactly those of the stream without the junk (all that decides: ids, scores,
    # severities, actions, detector scores; the provenance names another file and line, and reason texts read
    # the models after each micro-batch, whose boundaries the junk lines move)
    assert alerts_clean and [_decided(a) for a in alerts_mixed] == [_decided(a) for a in alerts_clean]


def _decided(a) -> dict:
    d = a.to_dict()
    for key in ("reasons", "provenance"):
        d.pop(key, None)
    return d
