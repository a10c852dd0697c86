"""Alert-store write throughput: :class:`~sinks.sql.SqlSink` beside a plain DBAPI ``executemany``, same run.

Both write the same ``n`` alerts into fresh tables of the same shape (same columns, primary key and indexes)
on the same server:

- **sink**: ``SqlSink.add_many`` + ``flush``: turning each :class:`~sinks.alert.Alert` into a row and
  writing them idempotently in one transaction (PostgreSQL: ``COPY`` into a stage table, then
  ``INSERT ... SELECT ... ON CONFLICT (alert_id) DO NOTHING``; SQLite: ``executemany`` of
  ``INSERT ... ON CONFLICT DO NOTHING``). What the engine pays.
- **plain**: the driver's own ``cursor.executemany`` of a plain ``INSERT`` with the rows already built
  (JSON already serialized), then ``commit``: the floor the database and driver set.
- **plain+encode**: the same plus building those rows from the alerts (the part the sink adds on top).
- **sink, again**: flushing the same alerts a second time (all duplicates; nothing is inserted).

Each is the best of ``repeats`` runs, each into a new table, dropped afterwards; connections are opened
before timing starts. Called by ``riskstream bench --db URL``.
"""

from __future__ import annotations

import platform
import random
import time
import uuid
from typing import Any

import orjson
from sqlalchemy import Engine

from sinks.alert import Alert, alert_id
from sinks.sql import SqlSink, alert_table, copy_row, create_sql_engine, hidden_url

__all__ = ["bench_db", "bench_alerts", "print_bench_db"]

_COLUMNS = ("alert_id", "event_id", "event_type", "entity_key", "user_id", "entities", "event_ts",
            "detected_at", "score", "severity", "action", "reasons", "detector_scores", "config_hash",
            "topic", "partition", "offset", "schema_version", "rules_version")
_JSON_COLUMNS = {"entities", "reasons", "detector_scores"}


def bench_alerts(n: int, *, seed: int = 7, run: str = "") -> list[Alert]:
    """``n`` realistic alerts (two reasons, three detector scores, provenance), reproducible by ``seed``."""
    rng = random.Random(seed)
    out = []
    t0 = 1714564800.0
    for i in range(n):
        ts = t0 + i * 0.05
        user = f"u{rng.randrange(max(n // 20, 1))}"
        out.append(Alert(
            alert_id=alert_id(f"bench-{run}-{i}", "bench"), event_id=f"bench-{run}-{i}",
            event_type="order" if i % 3 else "login",
            entities={"user": user, "device": f"d{rng.randrange(10**6)}",
                      "ip": f"10.{i % 256}.{i // 256 % 256}.1", "payment": f"p{rng.randrange(10**6)}"},
            event_ts=round(ts, 3), detected_at=round(ts + 0.2, 3), score=round(0.99 + rng.random() / 100, 6),
            severity=("medium", "high", "critical")[i % 3], action=("review", "block")[i % 2],
            reasons=({"detector": "hst", "feature": "amount", "value": round(rng.uniform(100, 5000), 2),
                      "detail": "above p99 (812.40)"},
                     {"detector": "rules", "feature": "new_device", "value": 1.0, "detail": "first seen"}),
            detector_scores={"hst": round(rng.random(), 6), "zscore": round(rng.random(), 6),
                             "rules": round(rng.random(), 6)},
            config_hash="bench", topic="orders", partition=i % 12, offset=100_000 + i,
        ))
    return out


def _plain_sql(engine: Engine, table: str) -> str:
    cols = ", ".join(f'"{c}"' for c in _COLUMNS)
    if engine.dialect.name == "postgresql":
        marks = ", ".join("%s::jsonb" if c in _JSON_COLUMNS else "%s" for c in _COLUMNS)
    else:
        marks = ", ".join("?" for _ in _COLUMNS)
    return f'INSERT INTO "{table}" ({cols}) VALUES ({marks})'


def _plain_rows(sink: SqlSink, alerts: list[Alert], sqlite: bool) -> list[tuple[Any, ...]]:
    """The rows the sink writes, as the fastest builder gives them (the COPY path's, on PostgreSQL)."""
    if not sqlite:
        return [copy_row(a) for a in alerts]
    rows = []
    for a in alerts:
        r = sink._row(a)  # the same values the sink writes
        row = []
        for c in _COLUMNS:
            v = r[c]
            if c in _JSON_COLUMNS:
                v = orjson.dumps(v).decode()
            elif sqlite and c in ("event_ts", "detected_at"):
                v = v.replace(tzinfo=None).isoformat(sep=" ")  # what SQLAlchemy's SQLite DateTime stores
            row.append(v)
        rows.append(tuple(row))
    return rows


def _count(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(f'SELECT count(*) FROM "{table}"').scalar_one())


def bench_db(url: str, n: int = 20000, *, batch_size: int = 1000, repeats: int = 3) -> dict[str, Any]:
    """Measure alert rows/s written by :class:`SqlSink` and by a plain ``executemany`` into ``url``.

    Returns a dict: ``rows``, ``sink_rows_per_s``, ``plain_rows_per_s``, ``ratio`` (sink / plain),
    ``plain_encode_rows_per_s``, ``ratio_encode`` (sink / plain+encode), ``sink_duplicate_rows_per_s``,
    the best times in seconds, and where it ran (``database``, password hidden; ``server``; ``python``).
    """
    if n < 1 or repeats < 1:
        raise ValueError("n and repeats must be >= 1")
    engine = create_sql_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    best: dict[str, float] = {}
    created: list[str] = []

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    try:
        with engine.connect() as conn:
            server = str(conn.exec_driver_sql("SELECT sqlite_version()" if sqlite else "SELECT version()")
                         .scalar_one())
        for rep in range(repeats):
            run = uuid.uuid4().hex[:8]
            alerts = bench_alerts(n, seed=rep, run=run)
            sink_table, plain_table = f"bench_sink_{run}", f"bench_plain_{run}"
            created += [sink_table, plain_table]
            sink = SqlSink(engine, table=sink_table, batch_size=batch_size, retries=0)
            SqlSink(engine, table=plain_table)  # same shape and indexes for the plain INSERT
            sink.count()  # a pooled connection is open before timing

            sink.add_many(alerts)
            t0 = time.perf_counter()
            sink.flush()
            keep("sink_s", time.perf_counter() - t0)
            sink.add_many(alerts)
            t0 = time.perf_counter()
            sink.flush()
            keep("sink_duplicate_s", time.perf_counter() - t0)

            t0 = time.perf_counter()
            rows = _plain_rows(sink, alerts, sqlite)
            encode_s = time.perf_counter() - t0
            sql = _plain_sql(engine, plain_table)
            raw = engine.raw_connection()
            try:
                cur = raw.cursor()
                t0 = time.perf_counter()
                for i in range(0, len(rows), batch_size):
                    cur.executemany(sql, rows[i : i + batch_size])
                raw.commit()
                plain_s = time.perf_counter() - t0
                cur.close()
            finally:
                raw.close()
            keep("plain_s", plain_s)
            keep("plain_encode_s", plain_s + encode_s)
            if _count(engine, sink_table) != n or _count(engine, plain_table) != n:
                raise RuntimeError("bench tables do not hold the rows written")
            for t in (sink_table, plain_table):
                alert_table(t).drop(engine)
                created.remove(t)
    finally:
        for t in created:
            alert_table(t).drop(engine, checkfirst=True)
        engine.dispose()
    out: dict[str, Any] = {
        "database": hidden_url(url),
        "server": server,
        "python": platform.python_version(),
        "rows": n,
        "sink_path": "copy" if not sqlite and engine.dialect.driver == "psycopg" else "executemany",
        "batch_size": batch_size,
        "repeats": repeats,
        **{k: round(v, 4) for k, v in best.items()},
        "sink_rows_per_s": round(n / best["sink_s"]),
        "plain_rows_per_s": round(n / best["plain_s"]),
        "plain_encode_rows_per_s": round(n / best["plain_encode_s"]),
        "sink_duplicate_rows_per_s": round(n / best["sink_duplicate_s"]),
    }
    out["ratio"] = round(best["plain_s"] / best["sink_s"], 3)
    out["ratio_encode"] = round(best["plain_encode_s"] / best["sink_s"], 3)
    return out


def print_bench_db(result: dict[str, Any]) -> None:
    """A short human summary of :func:`bench_db` on standard output."""
    r = result
    print(f"alert store: {r['database']} ({r['server'].split(',')[0]}), {r['rows']} alerts, "
          f"batches of {r['batch_size']}, best of {r['repeats']}")
    how = "encode + COPY + INSERT..SELECT" if r["sink_path"] == "copy" else "encode + INSERT executemany"
    w = 74
    print(f"  SqlSink flush ({how}, ON CONFLICT DO NOTHING):".ljust(w) + f"{r['sink_rows_per_s']:>9,} rows/s")
    print("  plain DBAPI executemany INSERT, rows pre-built:".ljust(w) + f"{r['plain_rows_per_s']:>9,} rows/s"
          f"   sink/plain = {r['ratio']:.2f}")
    print("  plain DBAPI executemany INSERT + building the rows:".ljust(w)
          + f"{r['plain_encode_rows_per_s']:>9,} rows/s"
          f"   sink/plain = {r['ratio_encode']:.2f}")
    print("  SqlSink re-flush of the same alerts (all duplicates):".ljust(w)
          + f"{r['sink_duplicate_rows_per_s']:>9,} rows/s")
