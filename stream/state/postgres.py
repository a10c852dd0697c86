"""A :class:`~stream.state.local.StateStore` in PostgreSQL: any process of the consumer group can take over a unit.

One row per ``(consumer group, unit)`` in ``riskstream_checkpoints`` (created by the migrations in
``sinks/migrations``) holds :meth:`Checkpoint.to_bytes <stream.state.local.Checkpoint.to_bytes>` (engine state +
the input offsets it reflects), its SHA-256, its ``generation`` (1 at the first save, +1 at each next one), and
an HMAC-SHA256 over the group, the unit, the generation and that checksum, keyed by a secret the caller passes
in (the config loader reads it from ``RISKSTREAM_STATE_KEY``). A save is one transaction: the upsert raises the
generation, and the MAC of that generation is written before commit, so a reader sees the old checkpoint or
the new one, whole.

On load the checksum and then the HMAC are verified *before* anything is parsed or unpickled:

- a truncated or bit-flipped blob fails the checksum,
- a blob rewritten together with its checksum, a row copied from another unit or group, a row whose
  generation was changed, or a checkpoint written under another key fails the HMAC,
- a row whose generation is lower than the highest this store object has seen for that unit (loaded or
  saved) is a rollback and is refused too,

and each is refused with a :class:`~stream.errors.CheckpointError` that says which check failed. The state is
pickled engine state, so this check is what keeps a writer of the table from running code in the consumer.

Rollback, what is and is not detected. The generation only grows in the row, and it is under the MAC, so an
older copy put back carries its old generation and its old MAC; it cannot be relabelled newer without the key.
A process that has seen a newer generation of that unit (it saved it or loaded it) refuses the copy. A process
that starts *after* the copy was put back, and never saw the newer generation, cannot tell it from the real
latest checkpoint: nothing in the row can, without a record outside the table (such as the committed Kafka
offsets, which the consumer already compares with the checkpoint's offsets, or a generation kept elsewhere).
Only a holder of the key can forge a newer generation.

Upgrade from MAC format 1 (before the generation was covered; domain ``riskstream-checkpoint/1``): such a row
is refused, naming the fix, unless the store is opened with ``accept_v1_mac=True`` (``state.accept_v1_mac =
true``): then it is loaded (with a warning) and the next save of that unit writes format 2. Run once with it
on, let every unit checkpoint, and switch it off: while it is on, an old format-1 row put back, with its
generation rewritten, is accepted.

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
from stream.errors import CheckpointError, DecisionFenced
from stream.state.base import Checkpoint, prunable, visible_cuts

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
    #: The owner epoch (``riskstream_decision_owners.epoch``) the cut was recorded under; NULL before 0006.
    Column("owner", BigInteger, nullable=True),
    Index("ix_riskstream_merge_decisions_group_id_unit", "group_id", "unit", "id"),
)

#: Per (consumer group, unit) the latest claim of its decision log: a member that takes the unit over raises
#: ``epoch``; a cut is recorded only under the latest epoch (migration 0006).
owners_table = Table(
    "riskstream_decision_owners",
    metadata,
    Column("group_id", String, primary_key=True),
    Column("unit", Integer, primary_key=True),
    Column("epoch", BigInteger, nullable=False),
    Column("member", String, nullable=False),
    Column("claimed_at", UtcDateTime, nullable=False),
    CheckConstraint("epoch >= 1", name="epoch_positive"),
)

T = TypeVar("T")
log = logging.getLogger("riskstream.state")

#: Shortest HMAC key accepted (bytes). ``openssl rand -hex 32`` gives 64.
MIN_KEY_BYTES = 16
#: MAC format 1 (group, unit, checksum) and format 2 (group, unit, generation, checksum): distinct domains, so a
#: MAC of one format never verifies as the other.
_MAC_DOMAIN_V1 = b"riskstream-checkpoint/1"
_MAC_DOMAIN = b"riskstream-checkpoint/2"


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
    accept_v1_mac
        Load a checkpoint signed in MAC format 1 (before the generation was covered), once, to upgrade: the
        next save re-signs it in format 2. Off by default: such a row is refused, naming this setting.
    """

    def __init__(self, url_or_engine: str | URL | Engine, *, key: bytes | str, create: bool = True,
                 accept_v1_mac: bool = False) -> None:
        key_bytes = key.encode() if isinstance(key, str) else bytes(key)
        if len(key_bytes) < MIN_KEY_BYTES:
            raise ValueError(f"the state HMAC key must be at least {MIN_KEY_BYTES} bytes, not "
                             f"{len(key_bytes)} (generate one with `openssl rand -hex 32`)")
        self._key = key_bytes
        self._accept_v1 = accept_v1_mac
        #: The highest generation seen (loaded or saved) per (group, unit): a lower one loaded is a rollback.
        self._seen: dict[tuple[str, int], int] = {}
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
        generation = int(row.generation)
        if not hmac.compare_digest(self._mac(group, unit, generation, digest), str(row.hmac)):
            if not hmac.compare_digest(self._mac_v1(group, unit, digest), str(row.hmac)):
                raise CheckpointError(
                    f"{what}: HMAC mismatch: the checkpoint was written with another key (check "
                    "RISKSTREAM_STATE_KEY), belongs to another group or unit, its generation was changed, or "
                    "it was tampered with; refusing to load it")
            if not self._accept_v1:
                raise CheckpointError(
                    f"{what}: signed in MAC format 1, which does not cover the generation (written before "
                    "riskstream signed it); to upgrade, run once with state.accept_v1_mac = true, so that the "
                    "next checkpoint re-signs it, then set it back to false; refusing to load it")
            log.warning("%s: accepted a MAC format 1 checkpoint (state.accept_v1_mac); the next save re-signs it",
                        what)
        seen = self._seen.get((group, int(unit)), 0)
        if generation < seen:
            raise CheckpointError(
                f"{what}: rollback: generation {generation} is older than generation {seen}, which this process "
                "already saw; an older checkpoint was put back; refusing to load it")
        checkpoint = Checkpoint.from_bytes(blob, where=what)
        self._seen[(group, int(unit))] = generation
        log.debug("loaded %s: generation %s, %d bytes, offsets %s", what, generation, len(blob),
                  dict(checkpoint.offsets))
        return checkpoint

    def save(self, group: str, unit: int, checkpoint: Checkpoint) -> None:
        """Replace the checkpoint of ``unit`` in one transaction (atomic), or raise :class:`CheckpointError`.

        The upsert raises the row's generation (1 for a new row); the MAC of that generation is then written in
        the same transaction, which holds the row's lock, so no reader ever sees a row without its MAC.
        """
        blob = checkpoint.to_bytes()
        digest = hashlib.sha256(blob).hexdigest()
        t = checkpoints_table
        row = {
            "group_id": group,
            "unit": _unit(unit),
            "blob": blob,
            "sha256": digest,
            "hmac": "",  # replaced below, before commit, by the MAC of the generation the upsert gave the row
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
        where = (t.c.group_id == group, t.c.unit == _unit(unit))

        def run() -> int:
            with self._engine.begin() as conn:
                conn.execute(stmt)
                generation = int(conn.execute(select(t.c.generation).where(*where)).scalar_one())
                conn.execute(t.update().where(*where).values(hmac=self._mac(group, unit, generation, digest)))
                return generation

        generation = self._run(f"save the checkpoint of group {group!r} unit {unit}", run)
        self._seen[(group, int(unit))] = generation

    # -- merge decisions (DecisionLog) ----------------------------------------------------------------------

    def claim_unit(self, group: str, unit: int, owner: str) -> int:
        """Claim the decision log of ``unit`` for ``owner``: raise its epoch (1 for the first claim) and return it.

        The upsert locks the unit's row in ``riskstream_decision_owners``, so it waits for an append in progress
        (which holds the same lock): every cut committed before is visible to the caller's next
        :meth:`load_decisions`, and every append under an older epoch after it is refused."""
        o = owners_table
        row = {"group_id": group, "unit": _unit(unit), "epoch": 1, "member": str(owner),
               "claimed_at": datetime.now(UTC)}
        ins = postgresql.insert(o) if self._pg else sqlite.insert(o)
        stmt = ins.values(row).on_conflict_do_update(
            index_elements=[o.c.group_id, o.c.unit],
            set_={"epoch": o.c.epoch + 1, "member": ins.excluded.member, "claimed_at": ins.excluded.claimed_at},
        )

        def run() -> int:
            with self._engine.begin() as conn:
                conn.execute(stmt)
                return int(conn.execute(select(o.c.epoch).where(o.c.group_id == group,
                                                                o.c.unit == _unit(unit))).scalar_one())

        return self._run(f"claim the merge decisions of group {group!r} unit {unit}", run)

    def epoch(self, group: str, unit: int) -> int:
        """The latest claim's epoch of the decisions of ``unit`` (0: never claimed)."""
        o = owners_table
        stmt = select(func.coalesce(func.max(o.c.epoch), 0)).where(o.c.group_id == group, o.c.unit == _unit(unit))

        def run() -> int:
            with self._engine.connect() as conn:
                return int(conn.execute(stmt).scalar_one())

        return self._run(f"read the decision epoch of group {group!r} unit {unit}", run)

    def append_decision(self, group: str, unit: int, cut: Any, *, epoch: int | None = None) -> None:
        """Insert one cut (committed, so durable, when this returns).

        With ``epoch``: one transaction that first updates the unit's claim row *where its epoch is still*
        ``epoch`` (a compare-and-set that takes the row's lock, so a concurrent claim waits for this transaction,
        and this one, behind a committed claim, finds no row), then inserts the cut tagged with it; no row
        updated means another member claimed the unit since: nothing is written, :class:`DecisionFenced`."""
        row = {"group_id": group, "unit": _unit(unit), "cut": {str(t): int(o) for t, o in cut.items()},
               "decided_at": datetime.now(UTC), "owner": None if epoch is None else int(epoch)}
        o = owners_table
        where = (o.c.group_id == group, o.c.unit == _unit(unit))

        def run() -> None:
            with self._engine.begin() as conn:
                if epoch is not None:
                    hit = conn.execute(o.update().where(*where, o.c.epoch == int(epoch))
                                       .values(epoch=o.c.epoch)).rowcount
                    if hit != 1:
                        raise _Refused(int(conn.execute(select(o.c.epoch).where(*where)).scalar() or 0))
                conn.execute(decisions_table.insert().values(row))

        try:
            self._run(f"record a merge decision of group {group!r} unit {unit}", run)
        except _Refused as refused:  # rolled back: nothing written
            current = refused.current
            raise DecisionFenced(
                f"merge decision of group {group!r} unit {unit} refused: this member claimed it at epoch {epoch}, "
                f"the unit is at epoch {current} (another member owns it now)",
                group=group, unit=int(unit), epoch=int(epoch or 0), current=current) from None

    def _decision_rows(self, group: str, unit: int) -> list[Any]:
        t = decisions_table
        stmt = select(t.c.id, t.c.owner, t.c.cut).where(t.c.group_id == group,
                                                         t.c.unit == _unit(unit)).order_by(t.c.id)

        def run() -> list[Any]:
            with self._engine.connect() as conn:
                return list(conn.execute(stmt))

        return self._run(f"load the merge decisions of group {group!r} unit {unit}", run)

    def decision_log(self, group: str, unit: int) -> list[dict[str, Any]]:
        """Every cut recorded for ``unit``, visible or not: ``{"cut", "owner" (epoch or None), "visible"}``."""
        rows = self._decision_rows(group, unit)
        return [{"cut": _cut(rows[i].cut), "owner": rows[i].owner, "visible": ok}
                for i, ok in visible_cuts((r.owner, r.cut) for r in rows)]

    def load_decisions(self, group: str, unit: int) -> list[dict[str, int]]:
        """The visible cuts of ``unit``, oldest first (a cut of a superseded epoch is not returned)."""
        rows = self._decision_rows(group, unit)
        return [_cut(rows[i].cut) for i, ok in visible_cuts((r.owner, r.cut) for r in rows) if ok]

    def prune_decisions(self, group: str, unit: int, log_start: Any) -> int:
        """Delete the cuts of ``unit`` below ``log_start`` (see :func:`~stream.state.base.prunable`) and the
        invisible ones; returns how many went."""
        rows = self._decision_rows(group, unit)
        gone = [rows[i].id for i, ok in visible_cuts((r.owner, r.cut) for r in rows)
                if not ok or prunable(_cut(rows[i].cut), log_start)]
        if not gone:
            return 0
        t = decisions_table

        def run() -> int:
            n = 0
            with self._engine.begin() as conn:
                for i in range(0, len(gone), 1000):
                    n += int(conn.execute(t.delete().where(t.c.id.in_(gone[i:i + 1000]))).rowcount)
            return n

        return self._run(f"prune the merge decisions of group {group!r} unit {unit}", run)

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
        o = owners_table
        unclaim = o.delete().where(o.c.group_id == group)
        if unit is not None:
            forget = forget.where(d.c.unit == _unit(unit))
            unclaim = unclaim.where(o.c.unit == _unit(unit))

        def run() -> int:
            with self._engine.begin() as conn:
                conn.execute(forget)  # the merge decisions go with the state they belong to
                conn.execute(unclaim)
                return int(conn.execute(stmt).rowcount)

        deleted = self._run(f"delete checkpoints of group {group!r}", run)
        for seen in [k for k in self._seen if k[0] == group and (unit is None or k[1] == int(unit))]:
            del self._seen[seen]  # deleted on purpose: the next save starts again at generation 1
        return deleted

    def close(self) -> None:
        """Dispose the engine if this store created it."""
        self._dispose()

    def __repr__(self) -> str:
        return f"PgStateStore({self._where!r})"

    # -- helpers --------------------------------------------------------------------------------------------

    def _mac(self, group: str, unit: int, generation: int, digest: str) -> str:
        """MAC format 2: over the group, the unit, the generation and the checksum of the blob."""
        msg = b"\n".join((_MAC_DOMAIN, group.encode(), str(int(unit)).encode(), str(int(generation)).encode(),
                          digest.encode()))
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _mac_v1(self, group: str, unit: int, digest: str) -> str:
        """MAC format 1 (no generation), only recognised to say so or, with ``accept_v1_mac``, to upgrade."""
        msg = b"\n".join((_MAC_DOMAIN_V1, group.encode(), str(int(unit)).encode(), digest.encode()))
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def _run(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except sa_exc.SQLAlchemyError as e:
            reason, retriable = describe_error(e, self._password)
            err = CheckpointError(f"cannot {what} at {self._where}: {reason}")
            err.retriable = retriable
            raise err from e


class _Refused(Exception):
    """Inside an append's transaction: the claim moved on (rolls the transaction back)."""

    def __init__(self, current: int) -> None:
        super().__init__(current)
        self.current = current


def _cut(cut: Any) -> dict[str, int]:
    return {str(k): int(v) for k, v in cut.items()}


def _unit(unit: int) -> int:
    if isinstance(unit, bool) or int(unit) != unit or unit < 0:
        raise ValueError(f"unit must be an integer >= 0, not {unit!r}")
    return int(unit)
