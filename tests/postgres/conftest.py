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
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.services import service_env

# --- the shared server --------------------------------------------------------------------------------------


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


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
    if _docker_answers():
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


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                   if p.parent.name.isdigit() else 0)
    found = [d for d in found if (d / "initdb").exists() and (d / "pg_ctl").exists()]
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class KillablePg:
    """A private PostgreSQL cluster: ``url``; ``kill()`` crashes it, ``start()`` brings it back on the same port."""

    bin: Path
    root: Path
    port: int
    as_postgres: bool

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres?connect_timeout=3"

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = (self.root / "server.log").read_text()[-2000:] if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}{done.stderr}\n{log}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.root / "data"), "-U", "postgres", "-E", "UTF8", "--auth=trust",
                  "--no-sync")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c full_page_writes=off")  # commits stay synchronous: a killed server keeps them
        self._run("pg_ctl", "start", "-D", str(self.root / "data"), "-l", str(self.root / "server.log"),
                  "-w", "-t", "60", "-o", opts)

    def kill(self) -> None:
        """Stop at once, without a shutdown checkpoint (the server recovers from its WAL on the next start)."""
        self._run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "immediate", "-w", "-t", "60")

    def running(self) -> bool:
        cmd = [str(self.bin / "pg_ctl"), "status", "-D", str(self.root / "data")]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def killable_pg() -> Iterator[KillablePg]:
    """A private cluster of the binaries ``scripts/services`` installs (it installs them if they are missing)."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        _services_url()  # installs the Debian postgresql package when missing
        pg_bin = _pg_bin()
    if pg_bin is None:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    as_postgres = os.geteuid() == 0  # postgres refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="riskstream-pgtest-", dir="/var/tmp" if Path("/var/tmp").is_dir() else None))
    if as_postgres:
        shutil.chown(root, "postgres", "postgres")
    server = KillablePg(pg_bin, root, _free_port(), as_postgres)
    try:
        server.init()
        server.start()
        yield server
    finally:
        if server.running():
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


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
