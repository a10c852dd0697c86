"""Fixtures of the PostgreSQL tests: a real server, a private schema per test, and a server the tests may kill.

The server comes from, in order: ``RISKSTREAM_DATABASE_URL``; testcontainers' ``PostgresContainer`` when a
Docker engine answers (``docker info``); else ``scripts/services up`` and the URL it prints. Tests are never
skipped for want of a server.

Each test gets its own schema (``pg_url`` puts it first on the ``search_path`` through the connection's
``options``), dropped afterwards, so tests run in any order and never see each other's tables.

``killable_pg`` is a throwaway cluster of the same PostgreSQL binaries ``scripts/services`` uses (initdb into a
temporary folder, its own port), so the outage tests can kill a server (``pg_ctl stop -m immediate``: no
shutdown checkpoint, as in a crash) without disturbing the shared one that other tests and engineers use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from stream.bench.harness import KillablePg, docker_answers, killable_pg_server, pg_bin
from tests.services import service_env

# --- the shared server --------------------------------------------------------------------------------------


def _services_env(name: str) -> str:
    """Start the local services (a no-op when they run) and return what ``scripts/services env`` gives ``name``."""
    return service_env(name, use_environment=False)


def _services_url() -> str:
    return _services_env("RISKSTREAM_DATABASE_URL")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """A Kafka broker for the label export test: ``RISKSTREAM_KAFKA_BOOTSTRAP``, else ``scripts/services up``."""
    return os.environ.get("RISKSTREAM_KAFKA_BOOTSTRAP") or _services_env("RISKSTREAM_KAFKA_BOOTSTRAP")


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server every test of this folder uses (see the module docstring)."""
    if url := os.environ.get("RISKSTREAM_DATABASE_URL"):
        if make_url(url).get_backend_name() != "postgresql":
            raise RuntimeError(f"RISKSTREAM_DATABASE_URL is not a PostgreSQL URL: {make_url(url)!r}")
        yield url
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver="psycopg") as pg:
            yield pg.get_connection_url()
        return
    yield _services_url()


def schema_url(base: str, schema: str) -> str:
    """``base`` with ``schema`` first on the search path of every connection."""
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A URL whose connections work in a fresh, empty schema of their own (dropped after the test)."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield schema_url(pg_server_url, schema)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


# --- a server the tests may kill ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def killable_pg() -> Iterator[KillablePg]:
    """A private cluster of the binaries ``scripts/services`` installs (it installs them if they are missing)."""
    if pg_bin() is None:
        _services_url()  # installs the Debian postgresql package when missing
    with killable_pg_server() as server:
        yield server


@pytest.fixture
def killable_url(killable_pg: KillablePg) -> Iterator[str]:
    """A fresh schema on the killable server (which is up when the test starts)."""
    if not killable_pg.running():
        killable_pg.start()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(killable_pg.url, poolclass=NullPool)  # no pooled connection outlives a kill
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield schema_url(killable_pg.url, schema)
        if not killable_pg.running():
            killable_pg.start()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
