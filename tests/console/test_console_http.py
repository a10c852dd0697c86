"""The console's access rules and input handling, through starlette's TestClient (no browser)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from sinks.feedback import feedback_table
from sinks.sql import create_sql_engine
from stream.console.app import create_app
from stream.console.store import audit_table
from tests.console.conftest import PASSWORDS, csrf_of, riskstream


@pytest.fixture(scope="module")
def app_engine(console_db: str) -> Iterator[tuple]:
    engine = create_sql_engine(console_db)
    yield create_app(engine, secret="test-secret"), engine
    engine.dispose()


def client(app_engine: tuple, user: str | None = None) -> TestClient:
    c = TestClient(app_engine[0], raise_server_exceptions=False)
    if user:
        tok = csrf_of(c.get("/login").text)
        r = c.post("/login", data={"csrf": tok, "username": user, "password": PASSWORDS[user], "next": "/"})
        assert r.status_code == 200 and "Case queue" in r.text
    return c


def test_nothing_answers_without_a_session(app_engine: tuple) -> None:
    c = client(app_engine)
    for path in ("/", "/case?e=user:u1&b=1", "/admin/audit"):
        r = c.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    assert c.get("/api/cases").status_code == 401
    r = c.post("/case/verdict", data={"verdict": "fraud"}, follow_redirects=False)
    assert r.status_code == 303
    assert c.get("/static/console.css").status_code == 200


def test_wrong_password_is_a_message(app_engine: tuple) -> None:
    c = client(app_engine)
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"csrf": tok, "username": "ada", "password": "nope"})
    assert r.status_code == 400 and "Wrong user name or password" in r.text
    assert c.get("/api/cases").status_code == 401


def test_forms_without_the_csrf_token_are_refused(app_engine: tuple) -> None:
    c = client(app_engine)
    r = c.post("/login", data={"username": "ada", "password": PASSWORDS["ada"]})
    assert r.status_code == 403 and "CSRF" in r.text
    c = client(app_engine, "ann")
    case = c.get("/api/cases").json()[0]
    r = c.post("/case/verdict", data={"e": case["entity_key"], "b": case["bucket"], "verdict": "fraud",
                                      "csrf": "forged"})
    assert r.status_code == 403 and "CSRF" in r.text


def test_bad_input_is_a_message_not_a_traceback(app_engine: tuple) -> None:
    c = client(app_engine, "ann")
    for q, text in (("severity=bogus", "severity must be"), ("since=yesterday", "not a date"),
                    ("page=x", "page must be"), ("status=closed", "status must be"), ("detector=a'b", "detector")):
        r = c.get(f"/?{q}")
        assert r.status_code == 400 and text in r.text and "Traceback" not in r.text, q
    assert c.get("/case?e=user:u1&b=zz").status_code == 400
    assert c.get("/case?e=user:nobody&b=1").status_code == 404
    case = c.get("/api/cases").json()[0]
    page = c.get(f"/case?e={case['entity_key']}&b={case['bucket']}").text
    r = c.post("/case/verdict", data={"e": case["entity_key"], "b": case["bucket"], "verdict": "maybe",
                                      "csrf": csrf_of(page)})
    assert r.status_code == 400 and "Choose a verdict" in r.text


def test_analyst_is_refused_the_admin_page(app_engine: tuple) -> None:
    assert client(app_engine, "ann").get("/admin/audit").status_code == 403
    r = client(app_engine, "ada").get("/admin/audit")
    assert r.status_code == 200 and "Audit trail" in r.text


def test_filters_and_paging(app_engine: tuple) -> None:
    c = client(app_engine, "ann")
    first = c.get("/api/cases").json()
    assert len(first) == 50 and [x["risk"] for x in first] == sorted((x["risk"] for x in first), reverse=True)
    second = c.get("/api/cases?page=2").json()
    assert second and not {(x["entity_key"], x["bucket"]) for x in first} & {(x["entity_key"], x["bucket"])
                                                                            for x in second}
    assert all(x["risk"] <= first[-1]["risk"] for x in second)
    high = c.get("/api/cases?severity=high").json()
    assert len(high) <= 50
    t = first[0]["first"][:10]
    ranged = c.get(f"/api/cases?since={t}&until={t}T23:59:59").json()
    assert ranged and all(x["first"][:10] == t for x in ranged)


def test_verdict_lands_in_feedback_and_audit_and_exports_as_labels(app_engine: tuple, console_db: str,
                                                                   tmp_path) -> None:
    app, engine = app_engine
    c = client(app_engine, "ann")
    case = c.get("/api/cases?status=open&page=2").json()[-1]
    page = c.get(f"/case?e={case['entity_key']}&b={case['bucket']}").text
    assert 'id="timeline"' in page and 'id="score-history"' in page
    # a replay's alerts ran no stored pack: their rule pack version is shown as "-"
    assert re.findall(r'<td class="rules-version"[^>]*>([^<]*)</td>', page) == ["-"] * page.count('<tr id="alert-')
    assert page.count('<tr id="alert-') > 0
    r = c.post("/case/verdict", data={"e": case["entity_key"], "b": case["bucket"], "verdict": "fraud",
                                      "note": "card testing", "csrf": csrf_of(page)})
    assert r.status_code == 200 and "recorded" in r.text
    with engine.connect() as conn:
        rows = conn.execute(select(feedback_table).where(feedback_table.c.reviewer == "ann")).mappings().all()
        audit = conn.execute(select(audit_table).where(audit_table.c.action == "verdict",
                                                       audit_table.c.username == "ann")).mappings().all()
    assert audit and audit[-1]["detail"]["note"] == "card testing"
    rows = [x for x in rows if x["alert_id"] in set(audit[-1]["detail"]["alerts"])]
    assert len(rows) == case["n"] and {x["outcome"] for x in rows} == {"fraud"}
    labelled = c.get("/api/cases?status=labelled").json()
    assert (case["entity_key"], case["bucket"]) in {(x["entity_key"], x["bucket"]) for x in labelled}
    # unsure: kept in the audit trail, no label row
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(feedback_table)).scalar()
    other = c.get("/api/cases?status=open&page=2").json()[-2]
    r = c.post("/case/verdict", data={"e": other["entity_key"], "b": other["bucket"], "verdict": "unsure",
                                      "csrf": csrf_of(page)})
    assert r.status_code == 200
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(feedback_table)).scalar() == before
    # the documented path into the engine: `riskstream label export` turns them into label events
    out = tmp_path / "labels.jsonl"
    r = riskstream("label", "export", "--db", console_db, "--out", str(out))
    assert r.returncode == 0, r.stderr
    events = [line for line in out.read_text().splitlines() if line]
    ids = {x["event_id"] for x in rows}
    assert sum(1 for e in events if re.search(r'"ref_event_id":"([^"]+)"', e).group(1) in ids) == len(ids)
    assert all('"type":"label"' in e for e in events)


def test_adduser_refuses_a_short_password_in_one_line(console_db: str) -> None:
    r = riskstream("console", "adduser", "eve", "--role", "analyst", "--db", console_db,
                   env={"RISKSTREAM_CONSOLE_PASSWORD": "short"})
    assert r.returncode == 2 and "at least 8 characters" in r.stderr and "Traceback" not in r.stderr
    r = riskstream("console", "adduser", "eve", "--role", "root", "--db", console_db,
                   env={"RISKSTREAM_CONSOLE_PASSWORD": "long-enough"})
    assert r.returncode == 2
