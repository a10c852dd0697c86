"""SQL sink: alerts in a table, written idempotently in batches (SQLAlchemy 2 Core; PostgreSQL or SQLite).

One code path serves both databases; only the ``INSERT`` construct differs:
``INSERT ... ON CONFLICT (alert_id) DO NOTHING`` from ``sqlalchemy.dialects.postgresql.insert`` or
``sqlalchemy.dialects.sqlite.insert``. A flush runs one ``executemany`` per ``batch_size`` rows inside one
transaction, so a flush is all or nothing, and a retried or replayed flush inserts only what is missing.

The table (see ``docs/sinks.md``) lives in the module-level :data:`metadata` so migrations can reuse it.
Rows hold the alert's canonical JSON form (:meth:`Alert.to_dict`: times to the millisecond, scores to 6
decimals), so :meth:`SqlSink.query` returns exactly what :func:`sinks.jsonl.read_alerts` returns for the
same alerts. PostgreSQL cannot store the NUL character in text or JSONB; on PostgreSQL it is written as
U+FFFD (on SQLite it is kept).

Errors: a dropped connection, a locked SQLite file or any ``OperationalError`` raises
``SinkError(retriable=True)``; other database errors raise ``SinkError(retriable=False)``. Messages name the
database with its password hidden. The buffer is kept, so the next flush retries the same alerts.

>>> from sinks.alert import Alert
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
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
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
    func,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.types import TypeDecorator

from sinks.alert import Alert
from sinks.base import BatchSink
from sinks.errors import SinkError

__all__ = ["SqlSink", "metadata", "alerts_table", "alert_table", "UtcDateTime"]

T = TypeVar("T")

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
        Index(f"ix_{name}_entity_key_event_ts", "entity_key", "event_ts"),
        Index(f"ix_{name}_severity_event_ts", "severity", "event_ts"),
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


class SqlSink(BatchSink):
    """Write alerts to a SQL table, idempotently by ``alert_id``.

    Parameters
    ----------
    url_or_engine
        A database URL (``postgresql+psycopg://user:pw@host/db``, ``sqlite:///path/alerts.db``) or an
        :class:`~sqlalchemy.Engine`. Closing the sink disposes an engine it created, never one given to it.
        For SQLite, the file's directory is created and ``journal_mode=WAL``, ``synchronous=NORMAL`` are set
        on every new connection.
    table
        Table name.
    batch_size
        Rows per ``executemany``; a flush of more alerts runs several, in one transaction.
    create
        Create the table and its indexes if missing (on PostgreSQL under an advisory lock, so processes
        starting together do not race).
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, table: str = "alerts", batch_size: int = 1000,
                 create: bool = True) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.batch_size = batch_size
        self.table = alert_table(table)
        self._closed = False
        if isinstance(url_or_engine, Engine):
            self._engine, self._owns_engine = url_or_engine, False
        else:
            url = make_url(url_or_engine)
            _make_sqlite_dir(url)
            # orjson writes the JSON columns ~5x faster than the stdlib (a third of a flush's time otherwise).
            engine = create_engine(url, pool_pre_ping=True, json_serializer=_json_dumps)
            self._engine, self._owns_engine = engine, True
        self._where = self._engine.url.render_as_string(hide_password=True)
        self._password = self._engine.url.password
        dialect = self._engine.dialect.name
        if dialect not in _DIALECTS:
            self._dispose()
            raise ValueError(f"SqlSink supports PostgreSQL and SQLite, not {dialect} ({self._where})")
        self._pg = dialect == "postgresql"
        if dialect == "sqlite" and not event.contains(self._engine, "connect", _sqlite_pragmas):
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._insert = (
            postgresql.insert(self.table) if self._pg else sqlite.insert(self.table)
        ).on_conflict_do_nothing(index_elements=["alert_id"])
        if create:
            try:
                self._run(f"create table {self.table.name}", self._create)
            except BaseException:
                self._dispose()
                raise

    @property
    def engine(self) -> Engine:
        return self._engine

    def _create(self) -> None:
        with self._engine.begin() as conn:
            if self._pg:
                key = int.from_bytes(hashlib.sha256(f"riskstream:{self.table.name}".encode()).digest()[:8],
                                     "big", signed=True)
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            self.table.metadata.create_all(conn, tables=[self.table], checkfirst=True)

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn``, turning database errors into :class:`SinkError` whose message hides the password."""
        try:
            return fn()
        except sa_exc.SQLAlchemyError as e:
            invalidated = isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated
            retriable = isinstance(e, _TRANSIENT) or invalidated
            cause = str(e.orig if isinstance(e, sa_exc.DBAPIError) else e).strip().splitlines()
            reason = f"{type(e).__name__}: {cause[0] if cause else ''}"
            if self._password:
                reason = reason.replace(self._password, "***")
            raise SinkError(f"cannot {what} at {self._where}: {reason}", retriable=retriable) from e

    def write_batch(self, alerts: Sequence[Alert]) -> None:
        if self._closed:
            raise SinkError(f"SqlSink at {self._where} is closed")
        rows: dict[str, dict[str, Any]] = {}
        for a in alerts:
            if a.alert_id not in rows:
                rows[a.alert_id] = self._row(a)
        batch = list(rows.values())

        def insert() -> None:
            with self._engine.begin() as conn:
                for i in range(0, len(batch), self.batch_size):
                    conn.execute(self._insert, batch[i : i + self.batch_size])

        self._run(f"write {len(batch)} alerts to {self.table.name}", insert)

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
        }

    def count(self) -> int:
        """Number of alerts in the table."""

        def run() -> int:
            with self._engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(self.table)).scalar_one())

        return self._run(f"count {self.table.name}", run)

    def query(self, entity_key: str | None = None, since: float | datetime | None = None,
              severity: str | None = None, limit: int | None = 100) -> list[Alert]:
        """Alerts read back from the table, oldest event first (ties by ``alert_id``).

        Parameters
        ----------
        entity_key
            Only this entity's alerts (``"user:u1"``, as :attr:`Alert.entity_key`).
        since
            Only alerts whose event time is at or after this (epoch seconds, or an aware ``datetime``).
        severity
            Only alerts of this severity.
        limit
            At most this many (``None``: all).
        """
        t = self.table
        stmt = select(t).order_by(t.c.event_ts, t.c.alert_id)
        if entity_key is not None:
            stmt = stmt.where(t.c.entity_key == entity_key)
        if since is not None:
            when = since if isinstance(since, datetime) else datetime.fromtimestamp(since, UTC)
            stmt = stmt.where(t.c.event_ts >= when)
        if severity is not None:
            stmt = stmt.where(t.c.severity == severity)
        if limit is not None:
            stmt = stmt.limit(limit)

        def run() -> list[Alert]:
            with self._engine.connect() as conn:
                return [_alert(r) for r in conn.execute(stmt).mappings()]

        return self._run(f"query {t.name}", run)

    def close(self) -> None:
        """Flush, then dispose the engine if this sink created it; a second close does nothing."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._dispose()

    def _dispose(self) -> None:
        if self._owns_engine:
            self._engine.dispose()

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


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _parse_iso(text_: str) -> datetime:
    return datetime.fromisoformat(text_.replace("Z", "+00:00"))


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
    )
