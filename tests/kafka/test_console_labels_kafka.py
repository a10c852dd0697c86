"""Verdicts teach the engine: a verdict posted in the console lands on the runtime's labels topic as a label
event that the runtime's record decoder reads and the engine's label store joins to the event it judged."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sinks.sql import create_sql_engine
from stream.bench.harness import read_topic
from stream.compiled import new_engine
from stream.config import load_settings
from stream.console.app import create_app
from stream.console.publish import LabelPublisher
from stream.console.store import ConsoleStore
from stream.events import Label
from stream.kafka.client import decode_record
from stream.sources import FileSource

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None) -> None:
    r = subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300, check=False)
    assert r.returncode == 0, r.stderr


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)


def test_a_console_verdict_reaches_the_labels_topic_and_the_engine_joins_it(kafka_bootstrap, topics, alert_db,
                                                                            tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl.gz"
    _cli("simulate", "--events", "6000", "--seed", "5", "-o", str(events))
    _cli("replay", str(events), "--db", alert_db, "-q")
    _cli("console", "adduser", "ann", "--role", "analyst", "--db", alert_db,
         env={"RISKSTREAM_CONSOLE_PASSWORD": "analyst-pass-1"})
    engine = create_sql_engine(alert_db)
    publisher = LabelPublisher(kafka_bootstrap, topics.labels)
    try:
        c = TestClient(create_app(engine, secret="t", label_publisher=publisher), raise_server_exceptions=False)
        r = c.post("/login", data={"csrf": _csrf(c.get("/login").text), "username": "ann",
                                   "password": "analyst-pass-1", "next": "/"})
        assert r.status_code == 200
        fraud_case, legit_case = c.get("/api/cases").json()[:2]

        def verdict(case: dict, v: str) -> str:
            page = c.get(f"/case?e={case['entity_key']}&b={case['bucket']}").text
            r = c.post("/case/verdict", data={"e": case["entity_key"], "b": case["bucket"], "verdict": v,
                                              "note": "t", "csrf": _csrf(page)})
            assert r.status_code == 200, r.text
            return r.text

        assert "label events sent" in verdict(fraud_case, "fraud")
        assert "label events sent" in verdict(legit_case, "legitimate")
        assert "label events sent" not in verdict(legit_case, "legitimate")  # the same verdict again: no new label
        assert "label events sent" not in verdict(legit_case, "unsure")  # unsure teaches nothing
        store = ConsoleStore(engine)
        want: dict[str, int] = {}
        user_of: dict[str, str] = {}
        for case, y in ((fraud_case, 1), (legit_case, 0)):
            for a in store.case_alerts(case["entity_key"], case["bucket"]):
                want[a.event_id] = y
                user_of[a.event_id] = a.entities["user"]
    finally:
        publisher.close()
        engine.dispose()

    records = read_topic(kafka_bootstrap, topics.labels)
    labels = [decode_record(r.topic, r.partition, r.offset, r.value) for r in records]
    assert labels and all(isinstance(x, Label) for x in labels)
    assert {x.ref_event_id: x.label for x in labels} == want  # each alerted event of both cases, once
    assert len(labels) == len(want) and all(x.source == "review" for x in labels)
    assert all(r.key.decode() == user_of[x.ref_event_id] for r, x in zip(records, labels, strict=True))

    # the engine the runtime runs joins each label to the vector its event was scored with
    # every scored vector kept (entity risk on), and long enough for a label timed now to join an event the
    # simulator dated in the past (live, verdicts come days after their events, well inside the 45-day ttl)
    (tmp_path / "risk.toml").write_text("[links]\nentity_risk = true\n[labels]\nttl = 3.0e9\n")
    eng = new_engine(load_settings(tmp_path / "risk.toml", env={}))
    for batch in FileSource([events]):
        eng.process([e for e in batch.events if e.type != "label"])  # the stream's own labels left out
    before = eng.label_store_stats()["joined"]
    eng.process(labels)
    assert eng.label_store_stats()["joined"] - before == len(want)

