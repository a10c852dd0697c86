"""Verdicts become label events for a replay: `riskstream label export` over the console's verdicts (latest verdict
wins, timed in event time on request), read by replay's file source and joined by the engine's label store; and a
console that cannot reach the labels topic says so on the page and keeps the verdict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from sinks.sql import create_sql_engine
from stream.compiled import new_engine
from stream.config import load_settings
from stream.console.app import create_app
from stream.console.publish import LabelPublisher
from stream.console.store import ConsoleStore, audit_table
from stream.events import Label, parse_ts
from stream.sources import FileSource
from tests.console.conftest import PASSWORDS, csrf_of, riskstream


@pytest.fixture(scope="module")
def engine(console_db: str) -> Iterator:
    e = create_sql_engine(console_db)
    yield e
    e.dispose()


def signed_in(app, user: str = "ann") -> TestClient:
    c = TestClient(app, raise_server_exceptions=False)
    c.post("/login", data={"csrf": csrf_of(c.get("/login").text), "username": user, "password": PASSWORDS[user],
                           "next": "/"})
    return c


def post_verdict(c: TestClient, case: dict, verdict: str) -> object:
    page = c.get(f"/case?e={case['entity_key']}&b={case['bucket']}").text
    return c.post("/case/verdict", data={"e": case["entity_key"], "b": case["bucket"], "verdict": verdict,
                                         "note": "", "csrf": csrf_of(page)})


def test_export_gives_each_reviewed_event_its_latest_verdict_and_replay_learns_it(
        engine, console_db: str, console_events: Path, tmp_path: Path) -> None:
    c = signed_in(create_app(engine, secret="s"))
    flipped, kept = c.get("/api/cases?status=open").json()[30:32]
    for case, v in ((flipped, "fraud"), (kept, "fraud"), (flipped, "legitimate"), (kept, "unsure")):
        assert post_verdict(c, case, v).status_code == 200
    store = ConsoleStore(engine)
    want = {a.event_id: 0 for a in store.case_alerts(flipped["entity_key"], flipped["bucket"])}
    want |= {a.event_id: 1 for a in store.case_alerts(kept["entity_key"], kept["bucket"])}  # unsure left it
    event_ts = {a.event_id: a.event_ts for case in (flipped, kept)
                for a in store.case_alerts(case["entity_key"], case["bucket"])}

    out = tmp_path / "labels.jsonl"
    r = riskstream("label", "export", "--db", console_db, "--out", str(out))
    assert r.returncode == 0, r.stderr
    mine = [e for e in map(orjson.loads, out.read_bytes().splitlines()) if e["ref_event_id"] in want]
    assert {e["ref_event_id"]: e["label"] for e in mine} == want and len(mine) == len(want)  # latest wins, once
    r = riskstream("label", "export", "--db", console_db, "--every-record", "--out", str(out))
    every = [e for e in map(orjson.loads, out.read_bytes().splitlines()) if e["ref_event_id"] in want]
    assert len(every) == sum(2 if y == 0 else 1 for y in want.values())  # fraud+legitimate; fraud (+unsure: none)

    # for a replay: labels timed one day after their events, merged into the recorded stream by the file source
    r = riskstream("label", "export", "--db", console_db, "--event-time-delay", "1d", "--out", str(out))
    assert r.returncode == 0, r.stderr
    timed = {e["ref_event_id"]: e for e in map(orjson.loads, out.read_bytes().splitlines())}
    for eid in want:
        assert parse_ts(timed[eid]["ts"]) == pytest.approx(event_ts[eid] + timedelta(days=1).total_seconds())
    ours = {e["event_id"] for e in timed.values()}
    (tmp_path / "risk.toml").write_text("[links]\nentity_risk = true\n")  # every scored vector is kept
    eng = new_engine(load_settings(tmp_path / "risk.toml", env={}))
    joined: dict[str, int] = {}
    for batch in FileSource([console_events, out]):
        evs = [e for e in batch.events if not (isinstance(e, Label) and e.event_id not in ours)]  # own labels out
        eng.process(evs)
        joined |= {e.ref_event_id: int(e.label or 0) for e in evs if isinstance(e, Label)}
    assert eng.label_store_stats()["joined"] == len(timed) and eng.label_store_stats()["missed"] == 0
    assert {k: joined[k] for k in want} == want

    r = riskstream("label", "export", "--db", console_db, "--event-time-delay", "soon")
    assert r.returncode == 2 and "duration" in r.stderr and "Traceback" not in r.stderr


def test_a_verdict_the_labels_topic_cannot_take_is_kept_and_said_so(engine) -> None:
    dead = LabelPublisher("127.0.0.1:1", "labels", bootstrap_timeout_ms=1000, timeout_s=2.0)
    c = signed_in(create_app(engine, secret="s", label_publisher=dead))
    case = c.get("/api/cases?status=open").json()[35]
    r = post_verdict(c, case, "fraud")
    assert r.status_code == 503 and "is stored" in r.text and "label export" in r.text and "Traceback" not in r.text
    labelled = c.get("/api/cases?status=labelled").json()
    assert (case["entity_key"], case["bucket"]) in {(x["entity_key"], x["bucket"]) for x in labelled}
    with engine.connect() as conn:
        rows = conn.execute(select(audit_table.c.action).where(audit_table.c.target == f"{case['entity_key']}@"
                                                                                       f"{case['bucket']}")).all()
    assert {"verdict", "verdict.unpublished"} <= {x.action for x in rows}
