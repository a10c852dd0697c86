"""Checkpoint stores: the engine state of one partition unit together with the input offsets it reflects.

A *partition unit* is one partition number ``p`` across the co-partitioned input topics (orders, logins,
labels); the Kafka runtime keeps one :class:`~stream.pipeline.Engine` per unit (see ``docs/runtime.md``). A
:class:`Checkpoint` holds that engine's :meth:`~stream.pipeline.Engine.snapshot` and, for every input topic,
the offset of the first record of partition ``p`` that the state does **not** yet reflect. State and offsets
are saved in one write, so they always agree: restoring a checkpoint and seeking to its offsets resumes
exactly where the state left off.

A :class:`StateStore` keeps the latest checkpoint of each ``(group, unit)``; the offsets it holds are the
authoritative position of the consumer group (Kafka's committed offsets trail them and only matter when a unit
has no checkpoint yet). :class:`LocalStateStore` keeps one file per unit in a directory, written atomically
(temporary file, ``fsync``, ``rename``, ``fsync`` of the directory) and verified on load with a SHA-256
checksum. Other stores (a database) implement the same two-method protocol and may reuse
:meth:`Checkpoint.to_bytes` / :meth:`Checkpoint.from_bytes` for their payload.

>>> import tempfile
>>> store = LocalStateStore(tempfile.mkdtemp())
>>> store.load("fraud", 3) is None
True
>>> store.save("fraud", 3, Checkpoint(offsets={"orders": 120, "logins": 75}, state=b"...", config_hash="abc"))
>>> ck = store.load("fraud", 3)
>>> ck.offsets["orders"], ck.state
(120, b'...')
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from sinks.jsonl import fsync_dir
from stream.errors import CheckpointError, ConfigError

__all__ = ["Checkpoint", "StateStore", "LocalStateStore", "open_state_store", "FORMAT_VERSION"]

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


class LocalStateStore:
    """Checkpoints as files: ``<directory>/<group>/unit-<p>.ckpt``.

    Parameters
    ----------
    directory
        Root folder, created if missing. Processes of one group that may take over each other's partitions
        must share it (same host or a shared volume); otherwise use a database store.
    fsync
        ``fsync`` the file and its directory on save (durable across a machine crash). Tests may turn it off.
    """

    def __init__(self, directory: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self.fsync = fsync

    def path(self, group: str, unit: int) -> Path:
        """The file of ``unit`` in ``group`` (the group name is percent-encoded into one path segment)."""
        if unit < 0:
            raise ValueError(f"unit must be >= 0, not {unit}")
        return self.directory / urllib.parse.quote(group, safe="") / f"unit-{int(unit)}.ckpt"

    def load(self, group: str, unit: int) -> Checkpoint | None:
        path = self.path(group, unit)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e}") from e
        return Checkpoint.from_bytes(blob, where=str(path))

    def save(self, group: str, unit: int, checkpoint: Checkpoint) -> None:
        path = self.path(group, unit)
        blob = checkpoint.to_bytes()
        tmp_name: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp_name, path)
            tmp_name = None
            if self.fsync:
                fsync_dir(path.parent)
        except OSError as e:
            raise CheckpointError(f"cannot save {path}: {e}") from e
        finally:
            if tmp_name is not None:
                try:
                    os.unlink(tmp_name)
                except OSError:
                    pass

    def units(self, group: str) -> list[int]:
        """Units of ``group`` that have a checkpoint, ascending."""
        folder = self.directory / urllib.parse.quote(group, safe="")
        out = []
        for p in folder.glob("unit-*.ckpt"):
            try:
                out.append(int(p.stem.removeprefix("unit-")))
            except ValueError:
                continue
        return sorted(out)

    def __repr__(self) -> str:
        return f"LocalStateStore({str(self.directory)!r})"


def open_state_store(state: Mapping[str, Any], *, key: str | None = None, database: str | None = None) -> StateStore:
    """The store the ``[state]`` settings section names.

    ``store = "local"``: files under ``dir``. ``store = "postgres"``: the ``riskstream_checkpoints`` table at
    ``state.database`` (else ``database``, the alert store's URL), each checkpoint signed with HMAC-SHA256 under
    ``key`` (the loader reads it from the environment variable that ``state.key_env`` names).
    """
    kind = str(state.get("store", "local"))
    if kind == "local":
        directory = str(state.get("dir") or "")
        if not directory:
            raise ConfigError('state.dir must name a directory when state.store = "local"')
        return LocalStateStore(directory)
    if kind == "postgres":
        url = str(state.get("database") or "") or (database or "")
        if not url:
            raise ConfigError('state.store = "postgres" needs state.database or sinks.database '
                              "(or RISKSTREAM_DATABASE_URL)")
        if not key:
            raise ConfigError(f'state.store = "postgres" needs an HMAC key in the environment variable '
                              f'{state.get("key_env") or "RISKSTREAM_STATE_KEY"} (e.g. `openssl rand -hex 32`)')
        from stream.pg_state import PgStateStore

        try:
            return PgStateStore(url, key=key)
        except ValueError as e:
            raise ConfigError(f"state store: {e}") from None
    raise ConfigError(f'state.store must be "local" or "postgres", not {kind!r}')
