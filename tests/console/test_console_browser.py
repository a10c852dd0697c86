"""The console in a real browser: Debian's headless Chromium driven by selenium through chromedriver.

The console runs as `riskstream console` (uvicorn) on a free 127.0.0.1 port over the replayed alerts; the test
signs in, filters the queue, opens a case, records a verdict and finds it in review_feedback and the audit
trail, and checks that the analyst is refused the admin page. On the rules page, the analyst's deploy is refused;
the admin edits the pack (adds a rule), backtests it on the recorded stream and deploys it, and the page shows
the new active version. The overview page draws its charts and reads a runtime metrics exporter (the one `riskstream
run --metrics-port` serves) through --metrics-url.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import func, select

from sinks.feedback import feedback_table
from sinks.sql import alerts_table, create_sql_engine
from stream.console.store import audit_table
from stream.kafka import RuntimeStats
from stream.kafka.observability import MetricsServer, start_metrics_server
from tests.console.browser import SHOTS, open_browser, shot, sign_in, start_console, stop_console, text_of


@pytest.fixture(scope="module")
def runtime_metrics(console_db: str) -> Iterator[tuple[RuntimeStats, MetricsServer]]:
    """The runtime's own metrics exporter, with the counters of a consumer that has read the 20,000 events (and
    raised the alerts `riskstream replay` stored of them)."""
    engine = create_sql_engine(console_db)
    try:
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(alerts_table)).scalar_one()
    finally:
        engine.dispose()
    stats = RuntimeStats()
    stats.started_at = time.time() - 3600
    stats.records_in = stats.events = 20_000
    stats.alerts = stored
    stats.units = {"orders/0", "orders/1"}
    stats.lag = {"orders/0": 120, "orders/1": 85}
    with start_metrics_server(stats, 0, process_metrics=False) as server:
        yield stats, server


@pytest.fixture(scope="module")
def console_url(console_db: str, console_events: Path,
                runtime_metrics: tuple[RuntimeStats, MetricsServer]) -> Iterator[str]:
    proc, url = start_console(console_db, "--backtest-input", str(console_events), "--backtest-max-events", "8000",
                              "--metrics-url", runtime_metrics[1].url + "/metrics")
    yield url
    stop_console(proc)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    yield from open_browser(tmp_path_factory)


def test_analyst_works_a_case_in_the_browser(browser: webdriver.Chrome, console_url: str, console_db: str) -> None:
    b = browser
    sign_in(b, console_url, "ann")
    Select(b.find_element(By.ID, "f-status")).select_by_value("open")
    Select(b.find_element(By.ID, "f-severity")).select_by_value("high")
    b.find_element(By.ID, "apply").click()
    WebDriverWait(b, 10).until(lambda d: "status=open" in d.current_url)
    assert "status=open" in b.current_url and "severity=high" in b.current_url
    links = b.find_elements(By.CSS_SELECTOR, "a.case-link")
    assert links, "no open high-severity case in the queue"
    shot(b, "console-queue.png")
    entity = links[0].text
    links[0].click()
    text_of(b, By.ID, "case-title", f"Case {entity}")
    rows = b.find_elements(By.CSS_SELECTOR, "#timeline > tbody > tr")
    assert rows and b.find_elements(By.CSS_SELECTOR, "table.reasons td.det")
    assert b.find_elements(By.CSS_SELECTOR, "#score-history circle")
    b.find_element(By.ID, "v-fraud").click()
    b.find_element(By.ID, "note").send_keys("browser verdict")
    b.find_element(By.ID, "record").click()
    text_of(b, By.ID, "message", "recorded")
    assert b.find_elements(By.CSS_SELECTOR, "#feedback tr")
    shot(b, "console-case.png")

    engine = create_sql_engine(console_db)
    try:
        with engine.connect() as conn:
            fb = conn.execute(select(feedback_table.c.outcome).where(feedback_table.c.reviewer == "ann",
                                                                     feedback_table.c.user_id.is_not(None))).all()
            audit = conn.execute(select(audit_table.c.detail, audit_table.c.target)
                                 .where(audit_table.c.action == "verdict", audit_table.c.username == "ann")).all()
    finally:
        engine.dispose()
    assert len(fb) >= len(rows) and {r[0] for r in fb} == {"fraud"}
    assert any(d["note"] == "browser verdict" and t.startswith(entity) for d, t in audit)

    # the analyst has no admin page; the admin has
    b.get(console_url + "/admin/audit")
    assert "Only an admin" in b.find_element(By.ID, "error").text
    sign_in(b, console_url, "ada")
    b.get(console_url + "/admin/audit")
    assert "browser verdict" in b.find_element(By.ID, "audit").text
    b.find_element(By.ID, "logout").click()
    text_of(b, By.TAG_NAME, "h1", "Sign in")
    b.get(console_url + "/")
    assert "/login" in b.current_url


NEW_RULE = '\n[[rules]]\nname = "huge_order"\nwhen = "order_amount > 600"\nscore = 5.0\naction = "block"\n'


def test_admin_edits_backtests_and_deploys_a_rule(browser: webdriver.Chrome, console_url: str) -> None:
    b = browser
    sign_in(b, console_url, "ann")  # the analyst may look, not deploy
    b.get(console_url + "/rules")
    before = int(b.find_element(By.ID, "active-version").text.lstrip("v"))
    b.find_element(By.ID, "deploy").click()
    text_of(b, By.ID, "error", "Only an admin may deploy rules.")
    assert b.find_element(By.ID, "active-version").text == f"v{before}"

    sign_in(b, console_url, "ada")
    b.get(console_url + "/rules")
    pack = b.find_element(By.ID, "pack")
    pack.send_keys(Keys.CONTROL, Keys.END)
    pack.send_keys(NEW_RULE)
    b.find_element(By.ID, "backtest").click()
    text_of(b, By.ID, "message", "Backtest done")
    assert int(b.find_element(By.ID, "bt-added").text) > 0
    assert "huge_order" in b.find_element(By.ID, "bt-diff").text
    assert "huge_order" in b.find_element(By.ID, "bt-summary").text
    shot(b, "console-rules-backtest.png")
    b.find_element(By.ID, "comment").send_keys("block orders over 600")
    b.find_element(By.ID, "deploy").click()
    # the next version number is one past the newest stored (a rollback may have made an older one active)
    shown = text_of(b, By.ID, "message", f"(was v{before}).")
    m = re.fullmatch(r"Deployed rule pack v(\d+) \(was v\d+\)\.", shown)
    assert m and int(m.group(1)) > before, shown
    assert b.find_element(By.ID, "active-version").text == f"v{m.group(1)}"
    assert "huge_order" in b.find_element(By.ID, "live-rules").text
    assert "block orders over 600" in b.find_element(By.ID, "versions").text


def test_overview_draws_its_charts(browser: webdriver.Chrome, console_url: str,
                                   runtime_metrics: tuple[RuntimeStats, MetricsServer]) -> None:
    b = browser
    runtime_metrics[0].last_poll_at = time.time()  # the consumer is alive: /healthz would answer 200
    sign_in(b, console_url, "ann")
    b.find_element(By.ID, "nav-overview").click()
    text_of(b, By.TAG_NAME, "h1", "Overview")
    bars = b.find_elements(By.CSS_SELECTOR, "#chart-alerts rect.bar")
    assert bars and all(r.size["width"] > 0 for r in bars)
    hours = b.find_elements(By.CSS_SELECTOR, "#buckets tbody tr")
    assert len(hours) == len(bars)  # one bar per bucket, each in the table too
    assert sum(int(r.find_elements(By.TAG_NAME, "td")[1].get_attribute("textContent")) for r in hours) \
        == int(b.find_element(By.ID, "span").text.split()[0].replace(",", ""))
    # earlier tests recorded verdicts: at least one precision bar
    assert b.find_elements(By.CSS_SELECTOR, "#chart-precision rect.bar")
    assert b.find_elements(By.CSS_SELECTOR, "#fires-detectors tbody tr td.mono")
    # the replayed alerts carry event time as detection time: counts, and the consumer's own alerts per 1,000 events
    n = runtime_metrics[0].alerts
    assert f"report {n:,} alerts for 20,000 events: {1000 * n / 20_000:.2f} per 1,000" \
        in b.find_element(By.ID, "rate-basis").text
    consumer = b.find_element(By.ID, "consumer-table").text
    assert "20,000" in consumer and "205" in consumer  # events, lag 120 + 85
    if SHOTS:  # the whole page in one picture
        height = int(b.execute_script("return document.documentElement.scrollHeight"))
        b.set_window_size(1280, min(height + 200, 3000))
        shot(b, "console-overview.png")
        b.set_window_size(1280, 1000)
