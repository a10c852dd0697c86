"""A :class:`~stream.state.local.StateStore` in PostgreSQL: any process of the consumer group can take over a unit.

One row per ``(consumer group, unit)`` in ``riskstream_checkpoints`` (created by the migrations in
``sinks/migrations``) holds :meth:`Checkpoint.to_bytes <stream.state.local.Checkpoint.to_bytes>` (engine state +
the input offsets it reflects), its SHA-256, and an HMAC-SHA256 over that checksum, the group and the unit,
keyed by a secret the caller passes in (the config loader reads it from ``RISKSTREAM_STATE_KEY``). A save
is one ``INSERT ... ON CONFLICT DO UPDATE``: a reader sees the old checkpoint or the new one, whole.

On load the checksum and then the HMAC are verified *before* anything is parsed or unpickled:

- a truncated or bit-flipped blob fails the checksum,
- a blob rewritten together with its checksum, a row copied from another unit or group, or a checkpoint
  written under another key fails the HMAC,

and each is refused with a :class:`~stream.errors.CheckpointError` that says which check failed. The state is
pickled engine state, so this check is what keeps a writer of the table from running code in the consumer.

Works on SQLite too (the same code; handy for tests and single-host runs).

>>> from stream.state.base import Checkpoint
>>> store = PgStateStore("sqlite://", key=b"0123456789abcdef0123456789abcdef")
>>> store.save("fraud", 0, Checkpoint(offsets={"orders": 42}, state=b"s", config_hash="c"))
>>> store.load("fraud", 0).offsets
{'orders': 42}
>>> other = PgStateStore(store.engine, key=b"another key, 16+ bytes long", create=False)
>>> other.load("fraud", 0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
stream.errors.CheckpointError: checkpoint of group 'fraud' unit 0 at sqlite://: HMAC mismatch: ...
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from sinks.sql import JSON_TYPE, EngineHolder, UtcDateTime, describe_error, metadata
from stream.errors import CheckpointError
from stream.state.base import Checkpoint

__all__ = ["PgStateStore", "MIN_KEY_BYTES"]

#: The store's table: per (consumer group, unit) the serialized state with the offsets it reflects, its SHA-256
#: and an HMAC-SHA256 over that. It joins the alert store's :data:`sinks.sql.metadata` (one schema, one set of
#: migrations in ``sinks/migrations``) when this module is imported.
checkpoints_table = Table(
    "riskstream_checkpoints",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("unit", Integer, primary_key=True),
    Column("blob", LargeBinary, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("hmac", String(64), nullable=False),
    Column("offsets", JSON_TYPE, nullable=False),
    Column("config_hash", String, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("generation", BigInteger, nullable=False),
    Column("saved_at", UtcDateTime, nullable=False),
    CheckConstraint("unit >= 0", name="unit_nonnegative"),
)

#: Append-only merge decisions of the Kafka runtime (see :class:`stream.state.base.DecisionLog`), in the
#: order appended (``id``).
decisions_table = Table(
    "riskstream_merge_decisions",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("group_id", String, nullable=False),
    Column("unit", Integer, nullable=False),
    Column("cut", JSON_TYPE, nullable=False),
    Column("decided_at", UtcDateTime, nullable=False),
    Index("ix_riskstream_merge_decisions_group_id_unit", "group_id", "unit", "id"),
)

T = TypeVar("T")
log = logging.getLogger("riskstream.state")

#: Shortest HMAC key accepted (bytes). ``openssl rand -hex 32`` gives 64.
MIN_KEY_BYTES = 16
_MAC_DOMAIN = b"riskstream-checkpoint/1"


class PgStateStore(EngineHolder):
    """Checkpoints of partition units in a database table, verified with SHA-256 and HMAC-SHA256.

    Parameters
    ----------
    url_or_engine
        ``postgresql+psycopg://user:pw@host/db`` (or SQLite), or an :class:`~sqlalchemy.Engine`. An engine
        given is never disposed by :meth:`close`.
    key
        The HMAC key (``str`` is UTF-8 encoded), at least :data:`MIN_KEY_BYTES` bytes. Every process of the
        group needs the same key; a checkpoint written under another key is refused.
    create
        Run the schema migrations first (creates the table if missing).
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, key: bytes | str, create: bool = True) -> None:
        key_bytes = key.encode() if isinstance(key, str) else bytes(key)
        if len(key_bytes) < MIN_KEY_BYTES:
            raise ValueError(f"the state HMAC key must be at least {MIN_KEY_BYTES} bytes, not "
                             f"{len(key_bytes)} (generate one with `openssl rand -hex 32`)")
        self._key = key_bytes
        self._open_engine(url_or_engine, "PgStateStore")
        if create:
            from sinks.migrations import upgrade

            self._prepare("migrate the schema", lambda: upgrade(self._engine))

    # -- the StateStore protocol ----------------------------------------------------------------------------

    def load(self, group: str, unit: int) -> Checkpoint | None:
        """The verified checkpoint of ``unit`` in ``group``, or None; a failed check is a CheckpointError."""
        t = checkpoints_table
        stmt = select(t.c.blob, t.c.sha256, t.c.hmac, t.c.generation).where(
            t.c.group_id == group, t.c.unit == _unit(unit))

        def run() -> Any:
            with self._engine.connect() as conn:
                return conn.execute(stmt).first()

        row = self._run(f"load the checkpoint of group {group!r} unit {unit}", run)
        if row is None:
            return None
        what = f"checkpoint of group {group!r} unit {unit} at {self._where}"
        blob = bytes(row.blob)
        digest = hashlib.sha256(blob).hexdigest()
        if not hmac.compare_digest(digest, str(row.sha256)):
            raise CheckpointError(
                f"{what}: checksum mismatch: the stored state ({len(blob)} bytes) is truncated or was "
                "modified; refusing to load it")
        if not hmac.compare_digest(self._mac(group, unit, digest), str(row.hmac)):
            raise CheckpointError(
                f"{what}: HMAC mismatch: the checkpoint was written with another key (check "
                "RISKSTREAM_STATE_KEY), belongs to another group or unit, or was tampered with; "
                "refusing to load it")
        checkpoint = Checkpoint.from_bytes(blob, where=what)
        log.debug("loaded %s: generation %s, %d bytes, offsets %s", what, row.generation, len(blob),
                  dict(checkpoint.offsets))
        return checkpoint

    def save(self, group: str, unit: int, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint of ``unit`` in one statement (atomic), or raise :class:`CheckpointError`."""
        blob = checkpoint.to_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        t = checkpoints_table
        row = {
            "group_id": group,
            "unit": _unit(unit),
            "blob": blob,
            "sha256": digest,
            "hmac": self._mac(group, unit, digest),
            "offsets": {str(k): int(v) for k, v in checkpoint.offsets.items()},
            "config_hash": checkpoint.config_hash,
            "events": int(checkpoint.events),
            "generation": 1,
            "saved_at": datetime.fromtimestamp(checkpoint.saved_at, UTC),
        }
        ins = postgresql.insert(t) if self._pg else sqlite.insert(t)
        stmt = ins.values(row).on_conflict_do_update(
            index_elements=[t.c.group_id, t.c.unit],
            set_={
                **{c: ins.excluded[c] for c in ("blob", "sha256", "hmac", "offsets", "config_hash", "events",
                                                 "saved_at")},
                "generation": t.c.generation + 1,
            },
        )

        def run() -> None:
            with self._engine.begin() as conn:
                conn.execute(stmt)

        self._run(f"save the checkpoint of group {group!r} unit {unit}", run)

    # -- merge decisions (DecisionLog) ----------------------------------------------------------------------

    def append_decision(self, group: str, unit: int, cut: Any) -> None:
        """Insert one cut (committed, so durable, when this returns)."""
        row = {"group_id": group, "unit": _unit(unit), "cut": {str(t): int(o) for t, o in cut.items()},
               "decided_at": datetime.now(UTC)}

        def run() -> None:
            with self._engine.begin() as conn:
                conn.execute(decisions_table.insert().values(row))

        self._run(f"record a merge decision of group {group!r} unit {unit}", run)

    def load_decisions(self, group: str, unit: int) -> list[dict[str, int]]:
        """The cuts of ``unit``, oldest first."""
        t = decisions_table
        stmt = select(t.c.cut).where(t.c.group_id == group, t.c.unit == _unit(unit)).order_by(t.c.id)

        def run() -> list[dict[str, int]]:
            with self._engine.connect() as conn:
                return [{str(k): int(v) for k, v in c.items()} for c in conn.execute(stmt).scalars()]

        return self._run(f"load the merge decisions of group {group!r} unit {unit}", run)

    # -- extras ---------------------------------------------------------------------------------------------

    def units(self, group: str) -> list[int]:
        """Units of ``group`` that have a checkpoint, ascending."""
        t = checkpoints_table
        stmt = select(t.c.unit).where(t.c.group_id == group).order_by(t.c.unit)

        def run() -> list[int]:
            with self._engine.connect() as conn:
                return [int(u) for u in conn.execute(stmt).scalars()]

        return self._run(f"list the checkpoints of group {group!r}", run)

    def generation(self, group: str, unit: int) -> int:
        """How many times the checkpoint of ``unit`` was saved (0: never)."""
        t = checkpoints_table
        stmt = select(func.coalesce(func.max(t.c.generation), 0)).where(
            t.c.group_id == group, t.c.unit == _unit(unit))

        def run() -> int:
            with self._engine.connect() as conn:
                return int(conn.execute(stmt).scalar_one())

        return self._run(f"read the generation of group {group!r} unit {unit}", run)

    def delete(self, group: str, unit: int | None = None) -> int:
        """Forget the checkpoint of ``unit`` (or of every unit of ``group``); returns how many went."""
        t = checkpoints_table
        stmt = t.delete().where(t.c.group_id == group)
        if unit is not None:
            stmt = stmt.where(t.c.unit == _unit(unit))

        d = decisions_table
        forget = d.delete().where(d.c.group_id == group)
        if unit is not None:
            forget = forget.where(d.c.unit == _unit(unit))

        def run() -> int:
            with self._engine.begin() as conn:
                conn.execute(forget)  # the merge decisions go with the state they belong to
                return int(conn.execute(stmt).rowcount)

        return self._run(f"delete checkpoints of group {group!r}", run)

    def close(self) -> None:
        """Dispose the engine if this store created it."""
        self._dispose()

    def __repr__(self) -> str:
        return f"PgStateStore({self._where!r})"

    # -- helpers --------------------------------------------------------------------------------------------

    def _mac(self, group: str, unit: int, digest: str) -> str:
        msg = b"\n".join((_MAC_DOMAIN, group.encode(), str(int(unit)).encode(), digest.encode()))
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _run(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except sa_exc.SQLAlchemyError as e:
            reason, retriable = describe_error(e, self._password)
            err = CheckpointError(f"cannot {what} at {self._where}: {reason}")
            err.retriable = retriable
            raise err from e


def _unit(unit: int) -> int:
    if isinstance(unit, bool) or int(unit) != unit or unit < 0:
        raise ValueError(f"unit must be an integer >= 0, not {unit!r}")
    return int(unit)
