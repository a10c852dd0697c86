"""Checkpoints as files: one file per unit in a directory, written atomically and verified on load.

:class:`LocalStateStore` writes a temporary file, ``fsync``s it, renames it over the old one and ``fsync``s
the directory; :meth:`~LocalStateStore.load` checks the SHA-256 checksum before anything is unpickled.

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

import logging
import os
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import orjson

from sinks.files import fsync_dir
from stream.errors import CheckpointError
from stream.state.base import Checkpoint

__all__ = ["LocalStateStore"]

log = logging.getLogger("riskstream.state")


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

    # -- merge decisions (DecisionLog) ----------------------------------------------------------------------

    def decisions_path(self, group: str, unit: int) -> Path:
        """The append-only decisions file of ``unit``: one JSON object per line."""
        return self.path(group, unit).with_suffix(".decisions")

    def append_decision(self, group: str, unit: int, cut: Mapping[str, int]) -> None:
        """Append one cut (a line; ``fsync``ed before returning when ``fsync`` is on)."""
        path = self.decisions_path(group, unit)
        # A leading newline ends a line torn by a crash in a previous append, so it cannot swallow this one.
        line = b"\n" + orjson.dumps(
            {"cut": {str(t): int(o) for t, o in cut.items()}, "at": time.time()}, option=orjson.OPT_SORT_KEYS
        ) + b"\n"
        try:
            new = not path.exists()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as fh:
                fh.write(line)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            if new and self.fsync:
                fsync_dir(path.parent)
        except OSError as e:
            raise CheckpointError(f"cannot append a decision to {path}: {e}") from e

    def load_decisions(self, group: str, unit: int) -> list[dict[str, int]]:
        """The cuts of ``unit``, oldest first. A line that does not parse (torn by a crash during its append,
        so never acted on) is skipped with a warning."""
        path = self.decisions_path(group, unit)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e}") from e
        out: list[dict[str, int]] = []
        for n, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                out.append({str(t): int(o) for t, o in rec["cut"].items()})
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                log.warning("%s line %d: not a decision record (torn write?), skipped", path, n)
        return out

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
