"""Fixtures for the console tests: one alert store filled by a short replay, shared by the module's tests.

The store is a private schema of the PostgreSQL in RISKSTREAM_DATABASE_URL (dropped afterwards), else SQLite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"ada": "admin-pass-1", "ann": "analyst-pass-1"}


def riskstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300, check=False)


@pytest.fixture(scope="session")
def console_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`riskstream simulate --events 20000 --seed 3`: the stream the store's alerts come from (and backtests run on)."""
    events = tmp_path_factory.mktemp("console-events") / "events.jsonl.gz"
    r = riskstream("simulate", "--events", "20000", "--seed", "3", "-o", str(events))
    assert r.returncode == 0, r.stderr
    return events


@pytest.fixture(scope="session")
def console_db(tmp_path_factory: pytest.TempPathFactory, console_events: Path) -> Iterator[str]:
    """A store holding the alerts of `riskstream replay` over `riskstream simulate --events 20000`, and two users."""
    tmp = tmp_path_factory.mktemp("console")
    base = os.environ.get("RISKSTREAM_DATABASE_URL")
    engine = schema = None
    if base:
        from sqlalchemy import create_engine, text

        schema = f"ct_{uuid.uuid4().hex[:12]}"
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}"
    else:
        url = f"sqlite:///{tmp / 'alerts.db'}"
    r = riskstream("replay", str(console_events), "--db", url, "-q")
    assert r.returncode == 0, r.stderr
    for name, role in (("ada", "admin"), ("ann", "analyst")):
        r = riskstream("console", "adduser", name, "--role", role, "--db", url,
                       env={"RISKSTREAM_CONSOLE_PASSWORD": PASSWORDS[name]})
        assert r.returncode == 0, r.stderr
    yield url
    if engine is not None:
        from sqlalchemy import text

        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)
