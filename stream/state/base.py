"""The checkpoint record and the state-store protocol.

A *partition unit* is one partition number ``p`` across the co-partitioned input topics (orders, logins,
labels); the Kafka runtime keeps one :class:`~stream.pipeline.Engine` per unit (see ``docs/runtime.md``). A
:class:`Checkpoint` holds that engine's :meth:`~stream.pipeline.Engine.snapshot` and, for every input topic,
the offset of the first record of partition ``p`` that the state does **not** yet reflect. State and offsets
are saved in one write, so they always agree: restoring a checkpoint and seeking to its offsets resumes
exactly where the state left off.

A :class:`StateStore` keeps the latest checkpoint of each ``(group, unit)``; the offsets it holds are the
authoritative position of the consumer group (Kafka's committed offsets trail them and only matter when a unit
has no checkpoint yet). Stores implement the two-method protocol and may reuse :meth:`Checkpoint.to_bytes` /
:meth:`Checkpoint.from_bytes` for their payload.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import orjson

from stream.errors import CheckpointError

__all__ = ["Checkpoint", "StateStore", "DecisionLog", "FORMAT_VERSION", "visible_cuts", "prunable"]

#: Version of the checkpoint byte format written by :meth:`Checkpoint.to_bytes`.
FORMAT_VERSION = 1
_MAGIC = b"RSCKPT"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The state of one partition unit and the input positions it reflects.

    Parameters
    ----------
    offsets
        Input topic -> offset of the first record (of the unit's partition) not reflected in ``state``: the
        position to seek to on restore.
    state
        :meth:`~stream.pipeline.Engine.snapshot` bytes.
    config_hash
        The detection configuration that made ``state`` (an engine refuses state from another one).
    saved_at
        Wall-clock time of the save, epoch seconds.
    events
        Events the state has absorbed (informational: logs and tests).
    """

    offsets: Mapping[str, int]
    state: bytes
    config_hash: str = ""
    saved_at: float = field(default_factory=time.time)
    events: int = 0

    def to_bytes(self) -> bytes:
        """``RSCKPT<version> <sha256 of payload>\\n<payload>``; the payload: a JSON header line, the state."""
        header = orjson.dumps(
            {
                "offsets": {str(k): int(v) for k, v in self.offsets.items()},
                "config_hash": self.config_hash,
                "saved_at": self.saved_at,
                "events": self.events,
                "state_len": len(self.state),
            },
            option=orjson.OPT_SORT_KEYS,
        )
        payload = header + b"\n" + self.state
        digest = hashlib.sha256(payload).hexdigest().encode()
        return _MAGIC + str(FORMAT_VERSION).encode() + b" " + digest + b"\n" + payload

    @classmethod
    def from_bytes(cls, blob: bytes, *, where: str = "checkpoint") -> Checkpoint:
        """Parse and verify :meth:`to_bytes` output; a torn, tampered or foreign blob is a
        :class:`CheckpointError`."""
        first, nl, payload = blob.partition(b"\n")
        if not nl or not first.startswith(_MAGIC):
            raise CheckpointError(f"{where}: not a riskstream checkpoint")
        version, _, digest = first[len(_MAGIC) :].partition(b" ")
        if version != str(FORMAT_VERSION).encode():
            raise CheckpointError(
                f"{where}: checkpoint format {version.decode(errors='replace')!r} is not supported"
            )
        if hashlib.sha256(payload).hexdigest().encode() != digest:
            raise CheckpointError(f"{where}: checksum mismatch (the file is truncated or was modified)")
        header_raw, nl, state = payload.partition(b"\n")
        try:
            header: dict[str, Any] = orjson.loads(header_raw)
            offsets = {str(k): int(v) for k, v in header["offsets"].items()}
            if len(state) != int(header["state_len"]):
                raise ValueError(f"state is {len(state)} bytes, header says {header['state_len']}")
            return cls(
                offsets=offsets,
                state=state,
                config_hash=str(header["config_hash"]),
                saved_at=float(header["saved_at"]),
                events=int(header["events"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise CheckpointError(f"{where}: malformed checkpoint header: {e}") from None


@runtime_checkable
class StateStore(Protocol):
    """Where partition-unit checkpoints live. ``save`` must be atomic: a later ``load`` sees the old
    checkpoint or the new one whole, never a mix, even if the process dies during the save."""

    def load(self, group: str, unit: int) -> Checkpoint | None:
        """The latest checkpoint of ``unit`` in consumer group ``group``, or None if it has none.

        Raises :class:`~stream.errors.CheckpointError` if one exists but cannot be read or verified.
        """

    def save(self, group: str, unit: int, checkpoint: Checkpoint) -> None:
        """Durably replace the checkpoint of ``unit``, or raise :class:`~stream.errors.CheckpointError`."""


@runtime_checkable
class DecisionLog(Protocol):
    """An append-only record of a unit's merge decisions (both stores implement it next to the checkpoints).

    A decision is a *cut*: input topic -> offset. The runtime records one when an idle input made it release
    records without waiting for that input (``kafka.idle_timeout_s``); every record of the unit below the cut
    was processed, in merge order, before any record at or beyond it. ``append_decision`` must be durable when
    it returns (the runtime calls it before processing the records, so before any alert they raise exists);
    :func:`stream.kafka.replay_kafka` and a member taking the unit over read them back with
    ``load_decisions``, in the order they were appended. See ``docs/runtime.md``.
    """

    def append_decision(self, group: str, unit: int, cut: Mapping[str, int], *, epoch: int | None = None) -> None:
        """Durably append a cut to the decisions of ``unit``, or raise :class:`~stream.errors.CheckpointError`.

        With ``epoch`` (what :meth:`claim_unit` returned), the append is a compare-and-set: it happens only if
        ``epoch`` is still the unit's latest claim, in one atomic step with that check, and otherwise writes
        nothing and raises :class:`~stream.errors.DecisionFenced`."""

    def load_decisions(self, group: str, unit: int) -> list[dict[str, int]]:
        """Every visible cut recorded for ``unit`` of ``group``, oldest first (empty if none): a cut appended
        under an epoch after a higher epoch's claim or cut (a superseded owner's) is never returned."""

    def claim_unit(self, group: str, unit: int, owner: str) -> int:
        """Claim the decision log of ``unit`` for ``owner`` (a member's name, for operators): the unit's epoch
        goes up by one (1 for the first claim) and is returned. From then on an append under a lower epoch is
        refused. A claim waits for an append in progress, so every cut a previous owner recorded is visible to
        a :meth:`load_decisions` made after the claim returns, and none it tries later is ever recorded."""

    def prune_decisions(self, group: str, unit: int, log_start: Mapping[str, int]) -> int:
        """Delete the cuts of ``unit`` that no reader can need any more (see :func:`prunable`) and any invisible
        ones; returns how many cuts went."""


def prunable(cut: Mapping[str, int], log_start: Mapping[str, int]) -> bool:
    """Whether no reader can ever need ``cut`` again: every topic it bounds starts (its log-start offset, records
    below it deleted by retention or ``delete_records``) at or past the cut. A reader positioned at or past the
    log start has then passed the cut already, and there is nothing below it to read. A topic of the cut whose
    log start is not known keeps the cut.

    >>> prunable({"orders": 10, "logins": 4}, {"orders": 10, "logins": 7})
    True
    >>> prunable({"orders": 10, "logins": 4}, {"orders": 9, "logins": 7})
    False
    >>> prunable({"orders": 10}, {})
    False
    """
    return all(t in log_start and int(o) <= int(log_start[t]) for t, o in cut.items())


def visible_cuts(records: Iterable[tuple[int | None, Mapping[str, int] | None]]) -> list[tuple[int, bool]]:
    """Which records of a decision log, in append order, a reader sees: ``(owner epoch or None, cut or None)``
    per record (a cut of None is a claim marker); returns ``(index, visible)`` for each cut.

    A cut recorded under epoch ``e`` after a claim or a cut of a higher epoch is a superseded owner's (a zombie
    that lost the unit) and is invisible. Stores make such a record impossible (the append is a compare-and-set
    on the claim, serialised with the claim); this is the reader's side of the same rule, so a record slipped
    in any other way (a store that lost its lock, a copied file) still cannot change what a replay does. A cut
    without an epoch (recorded before epochs existed) is always visible and does not raise the bar.

    >>> visible_cuts([(1, {"a": 1}), (None, None), (2, {"a": 2}), (1, {"a": 3}), (None, {"a": 4})])
    [(0, True), (2, True), (3, False), (4, True)]
    >>> visible_cuts([(1, {"a": 1}), (2, None), (1, {"a": 2})])
    [(0, True), (2, False)]
    """
    out: list[tuple[int, bool]] = []
    bar = 0
    for i, (epoch, cut) in enumerate(records):
        if cut is None:
            if epoch is not None:
                bar = max(bar, int(epoch))
            continue
        if epoch is None:
            out.append((i, True))
            continue
        ok = int(epoch) >= bar
        bar = max(bar, int(epoch))
        out.append((i, ok))
    return out
