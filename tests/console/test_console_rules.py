"""The console's rules page through starlette's TestClient: view, backtest, deploy (admin only), roll back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape as html_unescape
from pathlib import Path

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from sinks.sql import alerts_table, create_sql_engine
from stream.config import default_settings
from stream.console.app import create_app
from stream.console.store import ConsoleStore, audit_table
from stream.rulepacks import RulePackStore, configured_pack, pack_to_toml
from tests.console.conftest import PASSWORDS, csrf_of

EXTRA = '\n[[rules]]\nname = "huge_order"\nwhen = "order_amount > 600"\nscore = 5.0\naction = "block"\n'


@pytest.fixture(scope="module")
def app_engine(console_db: str, console_events: Path) -> Iterator[tuple]:
    engine = create_sql_engine(console_db)
    app = create_app(engine, secret="test-secret", backtest_inputs=[str(console_events)], backtest_max_events=20000)
    # the session's store is shared (the browser test deploys a pack too): start from the configured pack
    RulePackStore(engine, default_settings()).deploy(configured_pack(default_settings()), author="test-setup")
    yield app, engine
    engine.dispose()


def client(app_engine: tuple, user: str) -> TestClient:
    c = TestClient(app_engine[0], raise_server_exceptions=False)
    tok = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"csrf": tok, "username": user, "password": PASSWORDS[user], "next": "/rules"})
    assert r.status_code == 200 and "Live pack" in r.text
    return c


def _active(html: str) -> int:
    m = re.search(r'id="active-version">v(\d+)<', html)
    assert m, "no active version on the page"
    return int(m.group(1))


def _error(html: str) -> str:
    m = re.search(r'id="error">([^<]*)<', html)
    return html_unescape(m.group(1)) if m else ""


def test_the_rules_page_needs_a_session_and_csrf(app_engine: tuple) -> None:
    c = TestClient(app_engine[0], raise_server_exceptions=False)
    assert c.get("/rules", follow_redirects=False).status_code == 303
    for path in ("/rules/backtest", "/rules/deploy", "/rules/rollback"):
        assert c.post(path, data={"pack": ""}, follow_redirects=False).status_code == 303, path
    c = client(app_engine, "ada")
    for path in ("/rules/backtest", "/rules/deploy", "/rules/rollback"):
        r = c.post(path, data={"pack": "", "csrf": "forged"})
        assert r.status_code == 403 and "CSRF" in r.text, path


def test_live_pack_with_fire_counts_and_precision_from_reviews(app_engine: tuple) -> None:
    _, engine = app_engine
    # a reviewed alert whose reasons name a rule: the rule's precision is computed from the verdicts
    with engine.connect() as conn:
        rows = conn.execute(select(alerts_table.c.entity_key, alerts_table.c.event_ts, alerts_table.c.reasons)
                            .order_by(alerts_table.c.score.desc())).all()
    hit = next((ek, ts, r["feature"]) for ek, ts, reasons in rows for r in reasons if r["detector"] == "rules")
    store = ConsoleStore(engine)
    store.record_verdict("ada", hit[0], int(hit[1].timestamp() // store.window_s), "fraud", "rule test")
    c = client(app_engine, "ann")
    page = c.get("/rules").text
    assert 'id="live-rules"' in page and hit[2] in page
    stats = RulePackStore(engine, default_settings()).live_stats([hit[2]])[hit[2]]
    assert stats["alerts"] >= 1 and stats["fraud"] >= 1 and stats["precision"] is not None
    row = re.search(rf"<tr><td>{hit[2]}</td>.*?</tr>", page, re.S)
    assert row and f">{stats['alerts']}<" in row.group(0) and f"{stats['precision']:.3f}" in row.group(0)
    # every rule of the pack: the store's query (two passes on PostgreSQL) equals counting rule by rule
    packs = RulePackStore(engine, default_settings())
    names = [str(r["name"]) for r in packs.get().pack.get("rules") or []] + ["no_such_rule"]
    fast = packs.live_stats(names)
    assert fast == packs._live_stats_scan(names)
    # a block rule gives its alerts two reasons (its score and the forced block): alerts are counted, not reasons
    with engine.begin() as conn:
        src = conn.execute(select(alerts_table).where(alerts_table.c.entity_key == hit[0])).mappings().first()
        twice = [r for r in src["reasons"] if r["detector"] == "rules" and r["feature"] == hit[2]][:1] * 2
        conn.execute(alerts_table.insert().values(dict(src, alert_id="0" * 32, reasons=twice)))
    doubled = packs.live_stats([hit[2]])[hit[2]]
    assert doubled["alerts"] == stats["alerts"] + 1
    assert packs.live_stats(names) == packs._live_stats_scan(names)
    assert sum(v["alerts"] for v in fast.values()) > stats["alerts"] and fast["no_such_rule"]["alerts"] == 0


def test_a_bad_rule_is_a_message_on_the_page(app_engine: tuple) -> None:
    c = client(app_engine, "ada")
    page = c.get("/rules").text
    active = _active(page)
    tok = csrf_of(page)
    pack = pack_to_toml(configured_pack(default_settings()))
    for bad, reason in ((EXTRA.replace("order_amount", "order_amout"), "names unknown feature 'order_amout'"),
                        (EXTRA.replace(">", "=>"), "cannot parse clause 'order_amount => 600'"),
                        ("[[rules]\n", "invalid TOML")):
        for path in ("/rules/backtest", "/rules/deploy"):
            r = c.post(path, data={"csrf": tok, "pack": pack + bad, "input": "0"})
            assert r.status_code == 400 and reason in _error(r.text), (path, _error(r.text))
            assert "Traceback" not in r.text
    assert _active(c.get("/rules").text) == active  # nothing deployed


def test_analyst_may_backtest_but_not_deploy(app_engine: tuple) -> None:
    c = client(app_engine, "ann")
    page = c.get("/rules").text
    active = _active(page)
    pack = pack_to_toml(configured_pack(default_settings())) + EXTRA
    r = c.post("/rules/backtest", data={"csrf": csrf_of(page), "pack": pack, "input": "0"})
    assert r.status_code == 200 and 'id="backtest-result"' in r.text
    added = int(re.search(r'id="bt-added">(\d+)<', r.text).group(1))
    assert added > 0 and "huge_order" in r.text
    r = c.post("/rules/deploy", data={"csrf": csrf_of(page), "pack": pack, "comment": "mine"})
    assert r.status_code == 403 and "Only an admin may deploy rules." in _error(r.text)
    r = c.post("/rules/rollback", data={"csrf": csrf_of(page)})
    assert r.status_code == 403 and "Only an admin" in _error(r.text)
    assert _active(c.get("/rules").text) == active
    r = c.post("/rules/backtest", data={"csrf": csrf_of(page), "pack": pack, "input": "7"})
    assert r.status_code == 400 and "Choose a recorded stream" in _error(r.text)


def test_admin_deploys_then_rolls_back(app_engine: tuple) -> None:
    _, engine = app_engine
    c = client(app_engine, "ada")
    page = c.get("/rules").text
    before = _active(page)
    pack = pack_to_toml(configured_pack(default_settings())) + EXTRA
    r = c.post("/rules/deploy", data={"csrf": csrf_of(page), "pack": pack, "comment": "block big orders"})
    assert r.status_code == 200, _error(r.text)
    after = _active(r.text)
    assert after > before and f"Deployed rule pack v{after} (was v{before})" in r.text
    assert "huge_order" in re.search(r'id="live-rules".*?</table>', r.text, re.S).group(0)
    r = c.post("/rules/rollback", data={"csrf": csrf_of(page)})
    assert r.status_code == 200 and _active(r.text) == before
    with engine.connect() as conn:
        audit = conn.execute(select(audit_table.c.action, audit_table.c.target, audit_table.c.username)
                             .where(audit_table.c.action.like("rules.%")).order_by(audit_table.c.id)).all()
    assert ("rules.deploy", f"v{after}", "ada") in audit and ("rules.rollback", f"v{before}", "ada") in audit
    assert ("rules.deploy.refused", None, "ann") in audit and any(a[0] == "rules.backtest" for a in audit)
