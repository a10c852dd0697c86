"""The console's /overview: buckets, precision and fire counts on a small store of known alerts and verdicts (SQLite,
and PostgreSQL in a private schema when RISKSTREAM_DATABASE_URL is set: the SQL differs by dialect), and the
consumers' lag and throughput scraped from real prometheus-client HTTP servers."""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from sqlalchemy import create_engine, insert, text
from starlette.testclient import TestClient

from sinks.feedback import Feedback, FeedbackStore
from sinks.migrations import upgrade
from sinks.sql import alerts_table, create_sql_engine
from stream.console.app import create_app
from stream.console.overview import MetricsScraper, OverviewStore, check_metrics_url, parse_metrics
from stream.console.store import ConsoleStore
from stream.kafka import RuntimeStats
from stream.kafka.observability import start_metrics_server
from tests.console.conftest import csrf_of

T0 = datetime(2024, 5, 1, tzinfo=UTC)
R = {"big": {"detector": "rules", "feature": "big", "value": 1, "detail": "amount > 500"},
     "night": {"detector": "rules", "feature": "night", "value": 1, "detail": "hour < 5"},
     "hst": {"detector": "hst", "feature": "amount", "value": 0.9, "detail": "rare amount"},
     "hst2": {"detector": "hst", "feature": "hour", "value": 0.8, "detail": "rare hour"},
     "z": {"detector": "zscore", "feature": "amount", "value": 4.2, "detail": "z 4.2"}}
#: alert id -> (minutes after T0 in event time, reasons, verdict)
ALERTS = {
    "a0": (5, ["big", "hst"], "fraud"),
    "a1": (20, ["big", "night"], "legit"),   # two rules, one alert: counted once for the detector "rules"
    "a2": (59, ["z"], "fraud"),
    "a3": (120, ["hst", "hst2"], "fraud"),  # two reasons of one detector: one alert naming hst
    "a4": (150, ["hst"], "legit"),
    "a5": (151, ["hst"], "legit"),
    "a6": (179, ["hst"], "legit"),
    "a7": (359, ["night"], None),           # 05:59, no verdict
}
PW = "overview-pass-1"


def _fill(engine) -> None:
    now = datetime.now(UTC)
    rows = [{"alert_id": k, "event_id": f"e-{k}", "event_type": "order", "entity_key": f"user:{k}", "user_id": k,
             "entities": {"user": k}, "event_ts": T0 + timedelta(minutes=m), "detected_at": now, "score": 0.9,
             "severity": "high", "action": "review", "reasons": [R[r] for r in rs], "detector_scores": {},
             "config_hash": "test", "schema_version": 1} for k, (m, rs, _) in ALERTS.items()]
    with engine.begin() as conn:
        conn.execute(insert(alerts_table), rows)
    fb = [Feedback(event_id=f"e-{k}", alert_id=k, outcome=v, source="review", ts=T0.timestamp() + 86400,
                   reviewer="ann") for k, (_, _, v) in ALERTS.items() if v]
    # a chargeback on an event that raised no alert is no verdict on an alert: it counts nowhere here
    fb.append(Feedback(event_id="e-quiet", outcome="fraud", source="chargeback", ts=T0.timestamp() + 86400))
    FeedbackStore(engine, create=False).add(fb)
    ConsoleStore(engine).add_user("ann", PW, "analyst")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    if request.param == "sqlite":
        eng = create_sql_engine(f"sqlite:///{tmp_path_factory.mktemp('overview') / 'alerts.db'}")
        upgrade(eng)
        _fill(eng)
        yield eng
        eng.dispose()
        return
    base = os.environ.get("RISKSTREAM_DATABASE_URL")
    if not base:
        pytest.skip("RISKSTREAM_DATABASE_URL is not set (scripts/services env)")
    schema = f"ov_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    eng = create_sql_engine(f"{base}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}")
    try:
        upgrade(eng)
        _fill(eng)
        yield eng
    finally:
        eng.dispose()
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def _client(app) -> TestClient:
    c = TestClient(app, raise_server_exceptions=False)
    r = c.post("/login", data={"csrf": csrf_of(c.get("/login").text), "username": "ann", "password": PW,
                               "next": "/overview"})
    assert r.status_code == 200 and "<h1>Overview</h1>" in r.text
    return c


class _Tables(HTMLParser):
    """Cell texts of each <table id=...> on a page: {id: [[cell, ...], ...]} (body and head rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "table":
            self._id = a.get("id")
            self.tables[self._id or ""] = []
        elif tag == "tr" and self._id is not None:
            self.tables[self._id].append([])
        elif tag in ("td", "th") and self._id is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._id is not None:
            self.tables[self._id][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._id = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    p = _Tables()
    p.feed(html)
    return p.tables


def test_overview_needs_a_session(engine) -> None:
    c = TestClient(create_app(engine, secret="s"), raise_server_exceptions=False)
    r = c.get("/overview", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")


def test_buckets_precision_and_fire_counts(engine) -> None:
    page = _client(create_app(engine, secret="s")).get("/overview")
    assert page.status_code == 200
    t = tables(page.text)
    # per hour of event time (the alerts span 6 hours), empty hours included: hour, alerts, reviewed, fraud,
    # legit, precision
    assert t["buckets"][1:] == [
        ["2024-05-01 00:00", "3", "3", "2", "1", "0.667"],
        ["2024-05-01 01:00", "0", "0", "0", "0", "-"],
        ["2024-05-01 02:00", "4", "4", "1", "3", "0.250"],
        ["2024-05-01 03:00", "0", "0", "0", "0", "-"],
        ["2024-05-01 04:00", "0", "0", "0", "0", "-"],
        ["2024-05-01 05:00", "1", "0", "0", "0", "-"],
    ]
    assert "8 alerts stored" in page.text and "6 buckets of one hour" in page.text
    # the charts carry their numbers: one bar per non-empty hour, precision bars only where there are verdicts
    alerts_svg = page.text.split('id="chart-alerts"')[1].split("</svg>")[0]
    assert re.findall(r"<rect class=\"bar\"[^>]*><title>([^<]+)</title>", alerts_svg) == [
        "2024-05-01 00:00 UTC: 3", "2024-05-01 01:00 UTC: 0", "2024-05-01 02:00 UTC: 4", "2024-05-01 03:00 UTC: 0",
        "2024-05-01 04:00 UTC: 0", "2024-05-01 05:00 UTC: 1"]
    prec_svg = page.text.split('id="chart-precision"')[1].split("</svg>")[0]
    assert re.findall(r"<title>([^<]+)</title>", prec_svg) == [
        "2024-05-01 00:00 UTC: 0.667 (2 fraud of 3 reviewed)", "2024-05-01 02:00 UTC: 0.250 (1 fraud of 4 reviewed)"]
    # fire counts: alerts naming each detector / rule (distinct alerts), share of the 8 alerts; no event count
    assert t["fires-detectors"][1:] == [["hst", "5", "62.5%", ""], ["rules", "3", "37.5%", ""],
                                        ["zscore", "1", "12.5%", ""]]
    assert t["fires-rules"][1:] == [["big", "2", "25.0%", ""], ["night", "2", "25.0%", ""]]
    assert "Not connected" in page.text and "--metrics-url" in page.text


def test_daily_buckets_when_the_alerts_span_more_than_four_days(engine) -> None:
    ov = OverviewStore(engine)
    assert ov.overview()["unit"] == "hour"
    days = ov.alerts_over_time(86400)
    assert days == {int(T0.timestamp()) // 86400: 8}
    pr = ov.precision_over_time(86400)
    assert pr == {int(T0.timestamp()) // 86400: (3, 4)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def known_metrics() -> Iterator[tuple[str, Counter, Gauge]]:
    """A prometheus-client HTTP server exporting the runtime's metric names with known values."""
    reg = CollectorRegistry()
    events = Counter("riskstream_events", "events", registry=reg)
    Counter("riskstream_records_in", "records", registry=reg).inc(2100)
    Counter("riskstream_alerts", "alerts", registry=reg).inc(8)
    lag = Gauge("riskstream_consumer_lag", "lag", ["topic", "partition"], registry=reg)
    uptime = Gauge("riskstream_uptime_seconds", "uptime", registry=reg)
    Gauge("riskstream_healthy", "healthy", registry=reg).set(1)
    Gauge("riskstream_owned_units", "units", registry=reg).set(2)
    events.inc(2000)
    lag.labels("orders", "0").set(7)
    lag.labels("orders", "1").set(5)
    uptime.set(1000)
    port = _free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    try:
        yield f"http://127.0.0.1:{port}", events, uptime
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_lag_throughput_and_rates_per_1000_events_from_scraped_metrics(engine, known_metrics) -> None:
    url, events, uptime = known_metrics
    down = f"http://127.0.0.1:{_free_port()}/metrics"  # nothing listens there
    app = create_app(engine, secret="s", metrics_urls=[url, down])
    page = _client(app).get("/overview")
    assert page.status_code == 200
    t = tables(page.text)
    rows = {r[0]: r for r in t["consumer-table"][1:]}
    # healthy, units, events, alerts, events/s (2000 events / 1000 s up), lag 7 + 5, uptime
    assert rows[url + "/metrics"][1:] == ["yes", "2", "2,000", "8", "2.0", "12", "1000 s"]
    assert "unreachable" in rows[down][1]
    assert t["lag-table"][1:] == [[url + "/metrics", "orders", "0", "7"], [url + "/metrics", "orders", "1", "5"]]
    # per 1,000 events: the alerts detected since the consumer started (all 8, detected just now) over 2,000 events
    assert t["fires-detectors"][1][:4] == ["hst", "5", "62.5%", "2.50"]
    assert t["fires-rules"][1:] == [["big", "2", "25.0%", "1.00", ""], ["night", "2", "25.0%", "1.00", ""]]
    assert "over the 2,000 events" in page.text

    # scraped again a little later: events/s is the rate between the two scrapes
    c = _client(app)
    time.sleep(1.1)
    events.inc(300)
    uptime.set(1002)
    t0 = time.monotonic()
    page = c.get("/overview")
    spent = time.monotonic() - t0
    rate = float(tables(page.text)["consumer-table"][1][5].replace(",", ""))
    assert 300 / (1.1 + spent + 5) < rate <= 300 / 1.1 + 0.1
    assert "since the last scrape" in page.text

    # a consumer (re)started after every stored alert was detected: no rate per 1,000 events, only counts, and the
    # throughput is the average since its start (its uptime went back: another process)
    uptime.set(0.01)
    page = c.get("/overview")
    t = tables(page.text)
    assert t["fires-detectors"][1] == ["hst", "5", "62.5%", ""]
    assert "No stored alert was detected" in page.text
    assert "report 8 alerts for 2,300 events: 3.48 per 1,000" in page.text
    assert "average since the consumer started" in page.text


def test_the_runtime_exporter_parses() -> None:
    stats = RuntimeStats()
    stats.events, stats.alerts, stats.records_in = 1234, 17, 1240
    stats.lag = {"orders/0": 40, "logins/3": 2}
    with start_metrics_server(stats, 0, process_metrics=False) as srv:
        import httpx

        m = parse_metrics("x", httpx.get(srv.url + "/metrics", timeout=5).text)
    assert (m.events, m.alerts, m.records_in, m.lag_total) == (1234, 17, 1240, 42)
    assert m.lag == [("logins", "3", 2.0), ("orders", "0", 40.0)]
    assert m.healthy is False  # it never polled
    with pytest.raises(ValueError, match="no riskstream_"):
        parse_metrics("x", "# HELP other x\n# TYPE other gauge\nother 1\n")


def test_metrics_urls_are_checked() -> None:
    assert check_metrics_url("http://h:9400") == "http://h:9400/metrics"
    assert check_metrics_url("https://h/custom") == "https://h/custom"
    for bad in ("h:9400", "ftp://h/metrics", "http://h:99999/metrics"):
        with pytest.raises(ValueError, match="--metrics-url"):
            MetricsScraper([bad])
