"""The console in a real browser: Debian's headless Chromium driven by selenium through chromedriver.

The console runs as `riskstream console` (uvicorn) on a free 127.0.0.1 port over the replayed alerts; the test
signs in, filters the queue, opens a case, records a verdict and finds it in review_feedback and the audit
trail, and checks that the analyst is refused the admin page.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import select

from sinks.feedback import feedback_table
from sinks.sql import create_sql_engine
from stream.console.store import audit_table
from tests.console.conftest import PASSWORDS, ROOT

SHOTS = os.environ.get("RISKSTREAM_CONSOLE_SHOTS")  # a folder: save screenshots of the queue and a case there


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def console_url(console_db: str) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "console", "--db", console_db, "--port", str(port)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           "RISKSTREAM_CONSOLE_SECRET": "browser-test"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/login", timeout=1)
            break
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"console did not start: {err}") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "Debian's chromium and chromium-driver are needed: scripts/services browser"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(arg)
    b = webdriver.Chrome(service=Service(executable_path=driver), options=opts)
    b.set_page_load_timeout(30)
    yield b
    b.quit()


def _text_of(b: webdriver.Chrome, by: str, what: str, contains: str) -> str:
    """Wait (10 s at most) for the page the last click loaded to show ``contains`` in element ``what``."""
    def ready(d: webdriver.Chrome) -> str | bool:
        t = d.find_element(by, what).text
        return t if contains in t else False

    return str(WebDriverWait(b, 10, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
               .until(ready))


def _sign_in(b: webdriver.Chrome, url: str, user: str) -> None:
    b.delete_all_cookies()
    b.get(url + "/")
    assert "/login" in b.current_url  # no session: the queue redirects to the sign-in page
    b.find_element(By.ID, "username").send_keys(user)
    b.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    b.find_element(By.ID, "signin").click()
    _text_of(b, By.TAG_NAME, "h1", "Case queue")


def _shot(b: webdriver.Chrome, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(Path(SHOTS) / name))


def test_analyst_works_a_case_in_the_browser(browser: webdriver.Chrome, console_url: str, console_db: str) -> None:
    b = browser
    _sign_in(b, console_url, "ann")
    Select(b.find_element(By.ID, "f-status")).select_by_value("open")
    Select(b.find_element(By.ID, "f-severity")).select_by_value("high")
    b.find_element(By.ID, "apply").click()
    WebDriverWait(b, 10).until(lambda d: "status=open" in d.current_url)
    assert "status=open" in b.current_url and "severity=high" in b.current_url
    links = b.find_elements(By.CSS_SELECTOR, "a.case-link")
    assert links, "no open high-severity case in the queue"
    _shot(b, "console-queue.png")
    entity = links[0].text
    links[0].click()
    _text_of(b, By.ID, "case-title", f"Case {entity}")
    rows = b.find_elements(By.CSS_SELECTOR, "#timeline > tbody > tr")
    assert rows and b.find_elements(By.CSS_SELECTOR, "table.reasons td.det")
    assert b.find_elements(By.CSS_SELECTOR, "#score-history circle")
    b.find_element(By.ID, "v-fraud").click()
    b.find_element(By.ID, "note").send_keys("browser verdict")
    b.find_element(By.ID, "record").click()
    _text_of(b, By.ID, "message", "recorded")
    assert b.find_elements(By.CSS_SELECTOR, "#feedback tr")
    _shot(b, "console-case.png")

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
    _sign_in(b, console_url, "ada")
    b.get(console_url + "/admin/audit")
    assert "browser verdict" in b.find_element(By.ID, "audit").text
    b.find_element(By.ID, "logout").click()
    _text_of(b, By.TAG_NAME, "h1", "Sign in")
    b.get(console_url + "/")
    assert "/login" in b.current_url
