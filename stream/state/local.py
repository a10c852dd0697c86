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

import contextlib
import fcntl
import logging
import os
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from sinks.files import fsync_dir
from stream.errors import CheckpointError, DecisionFenced
from stream.state.base import Checkpoint, prunable, visible_cuts

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
    #
    # unit-<p>.decisions  one JSON object per line: a cut {"cut": {...}, "owner": epoch, "at": t} or a claim
    #                     marker {"claim": epoch, "owner": member, "at": t}
    # unit-<p>.owner      the unit's latest claim {"epoch": e, "owner": member, "at": t} (replaced atomically)
    # unit-<p>.lock       flock()ed around every claim, append and prune, so a claim and an append (the
    #                     compare-and-set on the epoch) never interleave, across processes of the host

    def decisions_path(self, group: str, unit: int) -> Path:
        """The append-only decisions file of ``unit``: one JSON object per line."""
        return self.path(group, unit).with_suffix(".decisions")

    def owner_path(self, group: str, unit: int) -> Path:
        """The file holding the latest claim (epoch) of the decisions of ``unit``."""
        return self.path(group, unit).with_suffix(".owner")

    @contextlib.contextmanager
    def _locked(self, group: str, unit: int) -> Iterator[None]:
        path = self.path(group, unit).with_suffix(".lock")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CheckpointError(f"cannot open the lock {path}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def epoch(self, group: str, unit: int) -> int:
        """The latest claim's epoch of the decisions of ``unit`` (0: never claimed)."""
        path = self.owner_path(group, unit)
        try:
            return int(orjson.loads(path.read_bytes())["epoch"])
        except FileNotFoundError:
            return 0
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"cannot read the claim {path}: {e}") from e

    def _append_line(self, path: Path, record: Mapping[str, object]) -> None:
        # A leading newline ends a line torn by a crash in a previous append, so it cannot swallow this one.
        line = b"\n" + orjson.dumps(record, option=orjson.OPT_SORT_KEYS) + b"\n"
        new = not path.exists()
        with open(path, "ab") as fh:
            fh.write(line)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        if new and self.fsync:
            fsync_dir(path.parent)

    def claim_unit(self, group: str, unit: int, owner: str) -> int:
        """Claim the decisions of ``unit`` for ``owner``: the next epoch, written to the owner file (first: from
        then on appends under a lower epoch are refused) and as a claim marker in the log; returns it."""
        path = self.decisions_path(group, unit)
        with self._locked(group, unit):
            epoch = self.epoch(group, unit) + 1
            try:
                self._write_atomic(self.owner_path(group, unit),
                                   orjson.dumps({"epoch": epoch, "owner": owner, "at": time.time()}))
                self._append_line(path, {"claim": epoch, "owner": owner, "at": time.time()})
            except OSError as e:
                raise CheckpointError(f"cannot claim the decisions {path}: {e}") from e
        return epoch

    def append_decision(self, group: str, unit: int, cut: Mapping[str, int], *, epoch: int | None = None) -> None:
        """Append one cut (a line; ``fsync``ed before returning when ``fsync`` is on). With ``epoch``, only while
        it is still the unit's latest claim (checked under the unit's lock), else :class:`DecisionFenced`."""
        path = self.decisions_path(group, unit)
        record: dict[str, object] = {"cut": {str(t): int(o) for t, o in cut.items()}, "at": time.time()}
        with self._locked(group, unit):
            if epoch is not None:
                current = self.epoch(group, unit)
                if current != int(epoch):
                    raise DecisionFenced(
                        f"merge decision of group {group!r} unit {unit} refused: this member claimed it at epoch "
                        f"{epoch}, the unit is at epoch {current} (another member owns it now)",
                        group=group, unit=int(unit), epoch=int(epoch), current=current)
                record["owner"] = int(epoch)
            try:
                self._append_line(path, record)
            except OSError as e:
                raise CheckpointError(f"cannot append a decision to {path}: {e}") from e

    def _read_log(self, group: str, unit: int) -> list[tuple[bytes, int | None, dict[str, int] | None]]:
        """``(line, epoch, cut or None for a claim marker)`` per readable line, in order."""
        path = self.decisions_path(group, unit)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise CheckpointError(f"cannot read {path}: {e}") from e
        out: list[tuple[bytes, int | None, dict[str, int] | None]] = []
        for n, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
                if "claim" in rec:
                    out.append((line, int(rec["claim"]), None))
                    continue
                owner = rec.get("owner")
                out.append((line, None if owner is None else int(owner),
                            {str(t): int(o) for t, o in rec["cut"].items()}))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
                log.warning("%s line %d: not a decision record (torn write?), skipped", path, n)
        return out

    def decision_log(self, group: str, unit: int) -> list[dict[str, object]]:
        """Every cut recorded for ``unit``, visible or not: ``{"cut", "owner" (epoch or None), "visible"}``."""
        recs = self._read_log(group, unit)
        return [{"cut": recs[i][2], "owner": recs[i][1], "visible": ok}
                for i, ok in visible_cuts((e, c) for _, e, c in recs)]

    def load_decisions(self, group: str, unit: int) -> list[dict[str, int]]:
        """The visible cuts of ``unit``, oldest first. A line that does not parse (torn by a crash during its
        append, so never acted on) is skipped with a warning; a cut of a superseded epoch is not returned."""
        recs = self._read_log(group, unit)
        return [recs[i][2] for i, ok in visible_cuts((e, c) for _, e, c in recs) if ok]  # type: ignore[misc]

    def prune_decisions(self, group: str, unit: int, log_start: Mapping[str, int]) -> int:
        """Rewrite the decisions of ``unit`` without the cuts below ``log_start`` (see
        :func:`~stream.state.base.prunable`) and without invisible ones; returns how many cuts went. The latest
        epoch stays as a claim marker at the end, so the log still hides a late cut of a superseded owner."""
        path = self.decisions_path(group, unit)
        with self._locked(group, unit):
            recs = self._read_log(group, unit)
            vis = visible_cuts((e, c) for _, e, c in recs)
            keep = [i for i, ok in vis if ok and not prunable(recs[i][2] or {}, log_start)]
            gone = len(vis) - len(keep)
            if gone == 0:
                return 0
            bar = max((e for _, e, _ in recs if e is not None), default=0)
            lines = [recs[i][0] for i in keep]
            if bar:
                lines.append(orjson.dumps({"claim": bar, "owner": "", "at": time.time(), "pruned": gone},
                                          option=orjson.OPT_SORT_KEYS))
            try:
                self._write_atomic(path, b"".join(b"\n" + line + b"\n" for line in lines))
            except OSError as e:
                raise CheckpointError(f"cannot prune the decisions {path}: {e}") from e
        return gone

    def _write_atomic(self, path: Path, blob: bytes) -> None:
        """Write ``blob`` to a temporary file, ``fsync`` it, rename it over ``path`` (raises OSError)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                if self.fsync:
                    os.fsync(fh.fileno())
            os.replace(tmp_name, path)
            tmp_name = ""
            if self.fsync:
                fsync_dir(path.parent)
        finally:
            if tmp_name:
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
