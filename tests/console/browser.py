"""What the browser tests share: a ``riskstream console`` subprocess on a free port, Debian's headless Chromium
driven by selenium through chromedriver, and waiting for what a click loads."""

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
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.console.conftest import PASSWORDS, ROOT

SHOTS = os.environ.get("RISKSTREAM_CONSOLE_SHOTS")  # a folder: save screenshots of the queue and a case there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_console(db: str, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """``riskstream console --db DB ARGS`` on a free 127.0.0.1 port, answering: the process and its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "console", "--db", db, "--port", str(port), *args],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                           "RISKSTREAM_CONSOLE_SECRET": "browser-test", **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/login", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"console did not start: {err}") from None
            time.sleep(0.2)


def stop_console(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def open_browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """Headless Chromium for a module's ``browser`` fixture (``yield from open_browser(tmp_path_factory)``)."""
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


def text_of(b: webdriver.Chrome, by: str, what: str, contains: str, timeout: float = 10) -> str:
    """Wait (``timeout`` s at most) for the page the last click loaded to show ``contains`` in element ``what``."""
    def ready(d: webdriver.Chrome) -> str | bool:
        try:
            t = d.find_element(by, what).text
        except WebDriverException as e:  # found in the page being left, read after it went: look again
            if "does not belong to the document" in str(e):
                return False
            raise
        return t if contains in t else False

    try:
        return str(WebDriverWait(b, timeout,
                                 ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
                   .until(ready))
    except TimeoutException:
        shown = {i: e.text for i in ("error", "message", what) for e in b.find_elements(By.ID, i)}
        raise AssertionError(f"{what!r} never showed {contains!r} on {b.current_url}; the page shows {shown}") from None


def sign_in(b: webdriver.Chrome, url: str, user: str, passwords: dict[str, str] = PASSWORDS) -> None:
    b.delete_all_cookies()
    b.get(url + "/")
    assert "/login" in b.current_url  # no session: the queue redirects to the sign-in page
    b.find_element(By.ID, "username").send_keys(user)
    b.find_element(By.ID, "password").send_keys(passwords[user])
    b.find_element(By.ID, "signin").click()
    text_of(b, By.TAG_NAME, "h1", "Case queue")


def shot(b: webdriver.Chrome, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        b.save_screenshot(str(Path(SHOTS) / name))
