"""SQL sink: alerts in a table, written idempotently in batches (SQLAlchemy 2 Core; PostgreSQL or SQLite).

One code path serves both databases; only the ``INSERT`` construct differs:
``INSERT ... ON CONFLICT (alert_id) DO NOTHING`` from ``sqlalchemy.dialects.postgresql.insert`` or
``sqlalchemy.dialects.sqlite.insert``. A flush runs one ``executemany`` per ``batch_size`` rows inside one
transaction, so a flush is all or nothing, and a retried or replayed flush inserts only what is missing.

The table (see ``docs/sinks.md``, ``docs/postgres.md``) lives in the module-level :data:`metadata`, which
describes the whole database schema riskstream owns (alerts, review feedback, checkpoints). The schema is
created and versioned by the Alembic migrations in ``sinks/migrations``: ``SqlSink(create=True)`` on the
default ``alerts`` table runs them to the newest revision (PostgreSQL and SQLite alike).
Rows hold the alert's canonical JSON form (:meth:`Alert.to_dict`: times to the millisecond, scores to 6
decimals), so :meth:`SqlSink.query` returns exactly what :func:`sinks.jsonl.read_alerts` returns for the
same alerts. PostgreSQL cannot store the NUL character in text or JSONB; on PostgreSQL it is written as
U+FFFD (on SQLite it is kept).

Errors: a dropped connection, a locked SQLite file or any ``OperationalError`` is transient: a flush retries
it ``retries`` times with exponential backoff, then raises ``SinkError(retriable=True)``. A refused password,
a missing database and every other database error raise ``SinkError(retriable=False)`` at once. Messages and
log lines name the database with its password hidden. The buffer is kept, so the next flush retries the same
alerts (and the engine commits no offset past them).

>>> from sinks.alert import SEVERITIES, Alert
>>> a = Alert(alert_id="a1", event_id="e1", event_type="order", entities={"user": "u1"}, event_ts=0.0,
...           detected_at=1.0, score=0.99, severity="high", action="review",
...           reasons=({"detector": "hst", "feature": "amount", "value": 900.0, "detail": "high"},),
...           detector_scores={"hst": 0.99}, config_hash="c")
>>> sink = SqlSink("sqlite://")
>>> sink.add(a); sink.flush(); sink.add(a); sink.flush()
>>> sink.count(), sink.query(entity_key="user:u1") == [a]
(1, True)
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    RowMapping,
    String,
    Table,
    create_engine,
    event,
    exists,
    func,
    literal,
    select,
    text,
    type_coerce,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.types import TypeDecorator

from sinks.alert import SEVERITIES, Alert
from sinks.base import BatchSink
from sinks.errors import DatabaseURLError, SinkError

__all__ = [
    "SqlSink", "metadata", "alerts_table", "alert_table", "UtcDateTime", "JSON_TYPE",
    "create_sql_engine", "describe_error", "hidden_url", "EngineHolder", "copy_row", "check_database_url",
    "mask_url_password", "DatabaseURLError",
]

T = TypeVar("T")
log = logging.getLogger("riskstream.sinks.sql")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The schema riskstream's tables belong to; migrations target this object.
metadata = MetaData(naming_convention=NAMING_CONVENTION)

_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")
#: JSON column type: ``jsonb`` on PostgreSQL, JSON text on SQLite.
JSON_TYPE = _JSON


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC ``datetime`` everywhere: ``timestamptz`` on PostgreSQL, UTC text on SQLite.

    SQLite has no time zone type and hands back naive datetimes; this type stores UTC and reads UTC back, so
    comparisons and round trips agree on both databases.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _define(md: MetaData, name: str) -> Table:
    return Table(
        name,
        md,
        Column("alert_id", String(64), primary_key=True),
        Column("event_id", String, nullable=False),
        Column("event_type", String, nullable=False),
        Column("entity_key", String, nullable=False),
        Column("user_id", String),
        Column("entities", _JSON, nullable=False),
        Column("event_ts", UtcDateTime, nullable=False),
        Column("detected_at", UtcDateTime, nullable=False),
        Column("score", Float, nullable=False),
        Column("severity", String, nullable=False),
        Column("action", String, nullable=False),
        Column("reasons", _JSON, nullable=False),
        Column("detector_scores", _JSON, nullable=False),
        Column("config_hash", String, nullable=False),
        Column("topic", String),
        Column("partition", Integer),
        Column("offset", BigInteger),
        Column("schema_version", Integer, nullable=False),
        # the rule pack version the alert was scored under; NULL: the configuration's own rules (migration 0009)
        Column("rules_version", Integer),
        Index(f"ix_{name}_entity_key_event_ts", "entity_key", "event_ts"),
        Index(f"ix_{name}_severity_event_ts", "severity", "event_ts"),
        Index(f"ix_{name}_event_ts", "event_ts"),
        Index(f"ix_{name}_event_id", "event_id"),
        # the analyst console's case queue reads alerts by score (migration 0007)
        Index(f"ix_{name}_score_alert_id", "score", "alert_id"),
    )


#: The ``alerts`` table in :data:`metadata`.
alerts_table = _define(metadata, "alerts")
_other_tables: dict[str, Table] = {}

def alert_table(name: str = "alerts") -> Table:
    """The alerts table under ``name``: :data:`alerts_table` for ``"alerts"``, else a table of the same shape.

    Tables with other names (per-tenant tables, tests) get their own :class:`MetaData`, so they never leak
    into :data:`metadata` and its migrations.
    """
    if name == alerts_table.name:
        return alerts_table
    if name not in _other_tables:
        _other_tables[name] = _define(MetaData(naming_convention=NAMING_CONVENTION), name)
    return _other_tables[name]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; ``synchronous=NORMAL`` is crash-safe in WAL mode."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


_DIALECTS = ("postgresql", "sqlite")
#: Errors after which the same flush may succeed: the server went away, SQLite is locked, the pool ran dry.
_TRANSIENT = (sa_exc.OperationalError, sa_exc.DisconnectionError, sa_exc.TimeoutError)
#: ...unless the server said no for good: bad credentials or a database/role that does not exist.
_PERMANENT_TEXT = ("password authentication failed", "authentication failed", "no password supplied",
                   "does not exist", "no pg_hba.conf entry")


#: ``scheme://user:password@`` in any text: the password runs to the last ``@`` of the URL (more masked, never less).
_URL_PASSWORD = re.compile(r"""(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^\s'"]*)@""")


def mask_url_password(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it replaced by ``***``.

    Works on text that is not a valid URL too (a bad port, an unknown dialect), where
    :func:`hidden_url` cannot parse it.

    >>> mask_url_password("postgresql+psycopg://u:s3cret@h:notaport/db")
    'postgresql+psycopg://u:***@h:notaport/db'
    """
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***@" if m["pw"] else m[0], text)


def hidden_url(url: str | URL) -> str:
    """``url`` as text with its password replaced by ``***`` (for messages and logs)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa_exc.ArgumentError, ValueError):
        return mask_url_password(str(url)) if isinstance(url, str) else "<unparsable database URL>"


_DRIVERS = {"postgresql": "postgresql+psycopg://user:password@host:5432/db", "sqlite": "sqlite:///path/alerts.db"}


def check_database_url(url: str | URL) -> URL:
    """``url`` parsed, or :class:`DatabaseURLError` saying in one line what is wrong with it.

    Checked: it parses; the port is a number from 1 to 65535; the database is PostgreSQL or SQLite; the
    driver is one SQLAlchemy knows and is installed. Nothing is connected to.
    """
    if isinstance(url, URL):
        shown = url.render_as_string(hide_password=True)
    else:
        shown = mask_url_password(str(url))
    example = " or ".join(_DRIVERS.values())
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise DatabaseURLError(f"database URL {shown!r} is not a SQLAlchemy URL (expected e.g. {example})") from None
    except ValueError:  # make_url's int(port)
        port = re.search(r"@[^/@]*:([^/@]*)(?:/|$)", str(url))
        raise DatabaseURLError(f"database URL {shown!r}: port {port[1] if port else '?'!r} is not a number"
                               ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise DatabaseURLError(f"database URL {shown!r}: port {parsed.port} is out of range (1-65535)")
    backend = parsed.get_backend_name()
    if backend not in _DIALECTS:
        raise DatabaseURLError(f"database URL {shown!r}: riskstream supports PostgreSQL and SQLite, not "
                               f"{backend!r} (e.g. {example})")
    try:
        dialect = parsed.get_dialect()
    except sa_exc.NoSuchModuleError:
        raise DatabaseURLError(f"database URL {shown!r}: unknown {backend} driver {parsed.get_driver_name()!r} "
                               f"(e.g. {_DRIVERS[backend]})") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise DatabaseURLError(f"database URL {shown!r}: the {backend} driver {dialect.driver!r} is not installed "
                               f"({e.name or e}; e.g. {_DRIVERS[backend]})") from None
    return parsed


def describe_error(e: BaseException, password: str | None) -> tuple[str, bool]:
    """One line naming a database error, with ``password`` masked, and whether retrying may help.

    ``e`` is a SQLAlchemy error or a driver's own (raised by a raw-connection operation such as ``COPY``).
    """
    invalidated = isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated
    cause = str(e.orig if isinstance(e, sa_exc.DBAPIError) else e).strip().splitlines()
    reason = f"{type(e).__name__}: {cause[0] if cause else ''}".strip()
    if password:
        for form in {password, urllib.parse.quote(password, safe=""), urllib.parse.quote_plus(password)}:
            reason = reason.replace(form, "***")
    # A driver's OperationalError (connection lost mid-COPY, database locked) is transient like SQLAlchemy's.
    driver_transient = not isinstance(e, sa_exc.SQLAlchemyError) and any(
        c.__name__ == "OperationalError" for c in type(e).__mro__)
    retriable = isinstance(e, _TRANSIENT) or invalidated or driver_transient
    if retriable and any(t in reason for t in _PERMANENT_TEXT):
        retriable = False
    return reason, retriable


def create_sql_engine(url: str | URL) -> Engine:
    """The engine riskstream uses for ``url``: pre-pinged pool, orjson for JSON columns, SQLite in WAL mode.

    For SQLite, the file's directory is created and ``journal_mode=WAL``, ``synchronous=NORMAL`` are set on
    every new connection. A URL riskstream cannot use raises :class:`~sinks.errors.DatabaseURLError`
    (see :func:`check_database_url`).
    """
    url = check_database_url(url)
    _make_sqlite_dir(url)
    # orjson writes the JSON columns ~5x faster than the stdlib (a third of a flush's time otherwise).
    engine = create_engine(url, pool_pre_ping=True, json_serializer=_json_dumps)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


class EngineHolder:
    """The engine a SQL component works on: opened from a URL (and disposed by :meth:`_dispose`) or borrowed
    (never disposed), with its URL as error messages show it (password hidden). Shared by the alert sink, the
    feedback store and the PostgreSQL state store; each keeps its own ``_run`` (its own errors and retries)."""

    _engine: Engine
    _owns_engine: bool
    _where: str
    _password: str | None
    _pg: bool
    _run: Callable[..., Any]

    def _open_engine(self, url_or_engine: str | URL | Engine, component: str) -> None:
        if isinstance(url_or_engine, Engine):
            self._engine, self._owns_engine = url_or_engine, False
        else:
            self._engine, self._owns_engine = create_sql_engine(url_or_engine), True
        self._where = self._engine.url.render_as_string(hide_password=True)
        self._password = self._engine.url.password
        dialect = self._engine.dialect.name
        if dialect not in _DIALECTS:
            self._dispose()
            raise ValueError(f"{component} supports PostgreSQL and SQLite, not {dialect} ({self._where})")
        self._pg = dialect == "postgresql"

    def _prepare(self, what: str, fn: Callable[[], Any]) -> None:
        """Run a setup step (schema creation, migrations) through ``_run``; on failure dispose the engine."""
        try:
            self._run(what, fn)
        except BaseException:
            self._dispose()
            raise

    @property
    def engine(self) -> Engine:
        return self._engine

    def _dispose(self) -> None:
        if self._owns_engine:
            self._engine.dispose()


class SqlSink(EngineHolder, BatchSink[Alert]):
    """Write alerts to a SQL table, idempotently by ``alert_id``.

    Parameters
    ----------
    url_or_engine
        A database URL (``postgresql+psycopg://user:pw@host/db``, ``sqlite:///path/alerts.db``) or an
        :class:`~sqlalchemy.Engine`. Closing the sink disposes an engine it created, never one given to it.
        For SQLite, the file's directory is created and ``journal_mode=WAL``, ``synchronous=NORMAL`` are set
        on every new connection.
    table
        Table name. The default ``alerts`` table is versioned by the migrations; a table of another name (per
        tenant, per test) has the same shape but is created directly from its definition, unversioned.
    batch_size
        Rows per ``executemany``; a flush of more alerts runs several, in one transaction.
    create
        Bring the schema up to date: for ``alerts``, run the migrations to the newest revision (on PostgreSQL
        under an advisory lock, so processes starting together do not race); for another table, create it
        and its indexes if missing.
    retries
        How many times a flush retries a transient error (server gone, connection dropped, SQLite locked)
        before it raises ``SinkError(retriable=True)``. 0: no retry.
    retry_backoff
        Seconds before the first retry; each next wait doubles, up to ``max_backoff``.
    max_backoff
        Longest wait between two attempts, in seconds.
    copy
        On PostgreSQL with psycopg 3, write a flush with ``COPY`` into a temporary stage table and one
        ``INSERT ... SELECT ... ON CONFLICT (alert_id) DO NOTHING`` (the default; ``batch_size`` is then
        unused). ``False``: ``executemany`` of the ``INSERT``, as on SQLite.
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, table: str = "alerts", batch_size: int = 1000,
                 create: bool = True, retries: int = 3, retry_backoff: float = 0.2,
                 max_backoff: float = 5.0, copy: bool = True) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if retries < 0 or retry_backoff < 0 or max_backoff < 0:
            raise ValueError("retries, retry_backoff and max_backoff must be >= 0")
        self.batch_size = batch_size
        self.retries = retries
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.table = alert_table(table)
        self._closed = False
        self._open_engine(url_or_engine, "SqlSink")
        if not self._pg and not event.contains(self._engine, "connect", _sqlite_pragmas):
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._insert = (
            postgresql.insert(self.table) if self._pg else sqlite.insert(self.table)
        ).on_conflict_do_nothing(index_elements=["alert_id"])
        #: PostgreSQL through psycopg 3 writes with COPY (2.5x executemany's rows/s; see stream/bench/postgres.py).
        self._copy = self._pg and self._engine.dialect.driver == "psycopg" and copy
        if create:
            self._prepare(f"create or upgrade table {self.table.name}", self._create)

    def _create(self) -> None:
        if self.table is alerts_table:
            from sinks.migrations import upgrade

            upgrade(self._engine)
            return
        with self._engine.begin() as conn:
            if self._pg:
                key = int.from_bytes(hashlib.sha256(f"riskstream:{self.table.name}".encode()).digest()[:8],
                                     "big", signed=True)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            self.table.metadata.create_all(conn, tables=[self.table], checkfirst=True)

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` once, turning database errors into :class:`SinkError`s that hide the password."""
        try:
            return fn()
        except (sa_exc.SQLAlchemyError, self._engine.dialect.loaded_dbapi.Error) as e:
            reason, retriable = describe_error(e, self._password)
            raise SinkError(f"cannot {what} at {self._where}: {reason}", retriable=retriable) from e

    def _retrying(self, what: str, fn: Callable[[], T]) -> T:
        """:meth:`_run` with up to :attr:`retries` retries of transient errors, waiting with backoff."""
        delay = self.retry_backoff
        attempts = self.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._run(what, fn)
            except SinkError as e:
                if not e.retriable:
                    raise
                if attempt == attempts:
                    if attempts > 1:
                        raise SinkError(f"{e} (gave up after {attempts} attempts)", retriable=True) from e
                    raise
                log.warning("%s; attempt %d of %d, retrying in %.2fs", e, attempt, attempts, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise AssertionError("unreachable")  # pragma: no cover

    def write_batch(self, alerts: Sequence[Alert]) -> None:
        if self._closed:
            raise SinkError(f"SqlSink at {self._where} is closed")
        if self._copy:
            unique: dict[str, tuple[Any, ...]] = {}
            for a in alerts:
                if a.alert_id not in unique:
                    unique[a.alert_id] = copy_row(a)
            tuples = list(unique.values())
            cols = [c.name for c in self.table.columns]

            def copy_in() -> None:
                with self._engine.begin() as conn:
                    self._copy_insert(conn, cols, tuples)

            self._retrying(f"write {len(tuples)} alerts to {self.table.name}", copy_in)
            return
        rows: dict[str, dict[str, Any]] = {}
        for a in alerts:
            if a.alert_id not in rows:
                rows[a.alert_id] = self._row(a)
        batch = list(rows.values())

        def insert() -> None:
            with self._engine.begin() as conn:
                for i in range(0, len(batch), self.batch_size):
                    conn.execute(self._insert, batch[i : i + self.batch_size])

        self._retrying(f"write {len(batch)} alerts to {self.table.name}", insert)

    def _copy_insert(self, conn: Connection, cols: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """PostgreSQL: ``COPY`` the rows into a temporary stage table, then insert the new ones from it.

        The stage has the table's columns and ``NOT NULL`` constraints and is dropped at commit; the whole
        flush is one transaction, as with ``executemany``.
        """
        stage = "riskstream_stage"
        names = ", ".join(f'"{c}"' for c in cols)
        target = conn.dialect.identifier_preparer.format_table(self.table)
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {stage} (LIKE {target}) ON COMMIT DROP")
        dbapi_conn: Any = conn.connection.dbapi_connection  # a psycopg.Connection
        with dbapi_conn.cursor() as cur, cur.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.exec_driver_sql(
            f"INSERT INTO {target} ({names}) SELECT {names} FROM {stage} ON CONFLICT (alert_id) DO NOTHING")

    def _row(self, a: Alert) -> dict[str, Any]:
        try:
            raw = a.to_json()
        except (TypeError, orjson.JSONEncodeError) as e:
            raise SinkError(f"alert {a.alert_id} cannot be encoded as JSON: {e}") from e
        d = orjson.loads(raw)
        entity_key = a.entity_key
        if self._pg and b"\\u0000" in raw:
            d, entity_key = _no_nul(d), _no_nul(entity_key)
        prov = d["provenance"]
        return {
            "alert_id": d["alert_id"],
            "event_id": d["event_id"],
            "event_type": d["event_type"],
            "entity_key": entity_key,
            "user_id": d["entities"].get("user"),
            "entities": d["entities"],
            "event_ts": _parse_iso(d["event_time"]),
            "detected_at": _parse_iso(d["detected_at"]),
            "score": d["score"],
            "severity": d["severity"],
            "action": d["action"],
            "reasons": d["reasons"],
            "detector_scores": d["detector_scores"],
            "config_hash": d["config_hash"],
            "topic": prov["topic"],
            "partition": prov["partition"],
            "offset": prov["offset"],
            "schema_version": d["schema_version"],
            "rules_version": d.get("rules_version"),
        }

    def count(self) -> int:
        """Number of alerts in the table."""

        def run() -> int:
            with self._engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(self.table)).scalar_one())

        return self._run(f"count {self.table.name}", run)

    def query(self, entity_key: str | None = None, since: float | datetime | None = None,
              severity: str | None = None, limit: int | None = 100, *,
              newest_first: bool = False, until: float | datetime | None = None, min_severity: str | None = None,
              min_score: float | None = None, action: str | None = None, rule: str | None = None,
              sort: str = "time") -> list[Alert]:
        """Alerts read back from the table, oldest event first (ties by ``alert_id``); every filter and the order
        are applied by the database.

        Parameters
        ----------
        entity_key
            Only this entity's alerts (``"user:u1"``, as :attr:`Alert.entity_key`).
        since, until
            Only alerts whose event time is at or after ``since`` / before ``until`` (epoch seconds, or aware
            ``datetime`` objects).
        severity
            Only alerts of exactly this severity.
        min_severity
            Only alerts of this severity or a higher one (``"high"``: high and critical).
        min_score
            Only alerts scored at least this.
        action
            Only alerts with this action (``"block"``...).
        rule
            Only alerts one of whose reasons is this rule (a reason of the ``rules`` detector whose ``feature``
            is the rule's name: a rule that fired, or forced a block).
        limit
            At most this many (``None``: all).
        newest_first
            Return the newest alerts first (with ``limit``: the latest ``limit`` alerts).
        sort
            ``"time"`` (event time, as above) or ``"score"``: the highest scores first (ties: the newest first),
            with ``limit`` the ``limit`` highest.
        """
        t = self.table
        if sort == "score":
            stmt = select(t).order_by(t.c.score.desc(), t.c.event_ts.desc(), t.c.alert_id.desc())
        elif sort != "time":
            raise ValueError(f"sort must be 'time' or 'score', not {sort!r}")
        elif newest_first:
            stmt = select(t).order_by(t.c.event_ts.desc(), t.c.alert_id.desc())
        else:
            stmt = select(t).order_by(t.c.event_ts, t.c.alert_id)
        if entity_key is not None:
            stmt = stmt.where(t.c.entity_key == entity_key)
        if since is not None:
            stmt = stmt.where(t.c.event_ts >= _aware(since))
        if until is not None:
            stmt = stmt.where(t.c.event_ts < _aware(until))
        if severity is not None:
            stmt = stmt.where(t.c.severity == severity)
        if min_severity is not None:
            if min_severity not in SEVERITIES:
                raise ValueError(f"min_severity must be one of {', '.join(SEVERITIES)}, not {min_severity!r}")
            stmt = stmt.where(t.c.severity.in_(SEVERITIES[SEVERITIES.index(min_severity):]))
        if min_score is not None:
            stmt = stmt.where(t.c.score >= min_score)
        if action is not None:
            stmt = stmt.where(t.c.action == action)
        if rule is not None:
            stmt = stmt.where(self._has_reason("rules", rule))
        if limit is not None:
            stmt = stmt.limit(limit)

        def run() -> list[Alert]:
            with self._engine.connect() as conn:
                return [_alert(r) for r in conn.execute(stmt).mappings()]

        return self._run(f"query {t.name}", run)

    def _has_reason(self, detector: str, feature: str) -> Any:
        """A condition: some reason of the alert has this ``detector`` and ``feature`` (JSONB containment on
        PostgreSQL, which its GIN-less ``jsonb`` still evaluates in the database; ``json_each`` on SQLite)."""
        t = self.table
        if self._pg:
            return type_coerce(t.c.reasons, postgresql.JSONB).contains([{"detector": detector, "feature": feature}])
        each = func.json_each(t.c.reasons).table_valued("value").alias("reason")
        return exists(select(literal(1)).select_from(each).where(
            func.json_extract(each.c.value, "$.detector") == detector,
            func.json_extract(each.c.value, "$.feature") == feature))

    def newest_event_ts(self) -> float | None:
        """The event time (epoch seconds) of the newest alert in the table; ``None`` when it is empty."""
        t = self.table

        def run() -> float | None:
            with self._engine.connect() as conn:
                newest = conn.execute(select(func.max(t.c.event_ts))).scalar_one()
            return None if newest is None else newest.timestamp()

        return self._run(f"read the newest alert of {t.name}", run)

    def close(self) -> None:
        """Flush, then dispose the engine if this sink created it; a second close does nothing."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._dispose()

    def __repr__(self) -> str:
        return f"SqlSink({self._where!r}, table={self.table.name!r})"


def _make_sqlite_dir(url: URL) -> None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:") or (
        url.database or ""
    ).startswith("file:"):
        return
    try:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # best effort: connecting reports the real problem, as a SinkError, when it matters
        pass


def _aware(when: float | datetime) -> datetime:
    return when if isinstance(when, datetime) else datetime.fromtimestamp(when, UTC)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _parse_iso(text_: str) -> datetime:
    return datetime.fromisoformat(text_.replace("Z", "+00:00"))


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY


def _json_text(value: Any) -> str:
    """Canonical JSON text of a JSON column, NUL characters (which jsonb rejects) replaced by U+FFFD."""
    raw = orjson.dumps(value, option=_CANONICAL)
    if b"\\u0000" in raw:
        raw = orjson.dumps(_no_nul(orjson.loads(raw)), option=_CANONICAL)
    return raw.decode()


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value)
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def copy_row(a: Alert) -> tuple[Any, ...]:
    """The PostgreSQL row of ``a``, in column order, for ``COPY``: the values ``_row`` gives after the JSON
    round trip (scores rounded, NaN/inf as NULL, numpy numbers as Python ones, NUL as U+FFFD), with the
    JSON columns as text."""
    try:
        d = a.to_dict()
        entities, reasons, scores = (_json_text(d[k]) for k in ("entities", "reasons", "detector_scores"))
    except (TypeError, orjson.JSONEncodeError) as e:
        raise SinkError(f"alert {a.alert_id} cannot be encoded as JSON: {e}") from e
    prov = d["provenance"]
    score = float(d["score"])
    return (
        _text_or_none(d["alert_id"]), _text_or_none(d["event_id"]), _text_or_none(d["event_type"]),
        _text_or_none(a.entity_key), _text_or_none(d["entities"].get("user")), entities,
        _parse_iso(d["event_time"]), _parse_iso(d["detected_at"]), score if math.isfinite(score) else None,
        _text_or_none(d["severity"]), _text_or_none(d["action"]), reasons, scores,
        _text_or_none(d["config_hash"]), _text_or_none(prov["topic"]),
        None if prov["partition"] is None else int(prov["partition"]),
        None if prov["offset"] is None else int(prov["offset"]), int(d["schema_version"]),
        None if d.get("rules_version") is None else int(d["rules_version"]),
    )


def _no_nul(value: Any) -> Any:
    """``value`` with every NUL character (which PostgreSQL text and JSONB reject) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, Mapping):
        return {_no_nul(k): _no_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nul(v) for v in value]
    return value


def _alert(r: RowMapping) -> Alert:
    return Alert(
        alert_id=r["alert_id"],
        event_id=r["event_id"],
        event_type=r["event_type"],
        entities=dict(r["entities"]),
        event_ts=r["event_ts"].timestamp(),
        detected_at=r["detected_at"].timestamp(),
        score=float(r["score"]),
        severity=r["severity"],
        action=r["action"],
        reasons=tuple(r["reasons"]),
        detector_scores=dict(r["detector_scores"]),
        config_hash=r["config_hash"],
        topic=r["topic"],
        partition=r["partition"],
        offset=r["offset"],
        rules_version=r.get("rules_version"),
    )
