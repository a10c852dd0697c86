"""Where the shared labelled data sets live (``nab/``, ``creditcard_ulb/``, ``fraud_handbook/``), on any machine.

The folder is ``RISKSTREAM_DATA`` when that is set; otherwise ``shared/data`` beside the repository, i.e.
``../shared/data`` from the root of the riskstream checkout: the first folder holding ``pyproject.toml`` and
``stream/`` above this file (a source checkout or an editable install), else above the working directory. So a
clone anywhere, CI's included, finds the data when ``shared/`` sits next to it, and nothing names one machine's
paths. The commands (``riskstream nab``), the tests and the ``bench/`` scripts all ask :func:`shared_data_dir`.

>>> shared_data_dir("nab", env={"RISKSTREAM_DATA": "/data"}, must_exist=False).as_posix()
'/data/nab'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from stream.errors import ConfigError

__all__ = ["DATA_ENV", "DataNotFound", "shared_data_dir", "repository_root"]

#: The environment variable naming the shared data folder.
DATA_ENV = "RISKSTREAM_DATA"


class DataNotFound(ConfigError):
    """The shared data folder (or the data set asked for) is not where it was looked for; the message says where."""


def repository_root(start: Path) -> Path | None:
    """The riskstream checkout ``start`` is in: the nearest folder at or above it with ``pyproject.toml`` and a
    ``stream`` package; ``None`` outside any."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "stream" / "__init__.py").is_file():
            return folder
    return None


def _candidates(env: Mapping[str, str], cwd: Path | None) -> tuple[list[Path], str]:
    """The data folders to try, in order, and how they were found (for messages)."""
    if env.get(DATA_ENV):
        return [Path(env[DATA_ENV]).expanduser()], f"from {DATA_ENV}"
    roots: list[Path] = []
    for start in (Path(__file__).parent, cwd if cwd is not None else Path.cwd()):
        root = repository_root(start)
        if root is not None and root not in roots:
            roots.append(root)
    how = f"{DATA_ENV} unset: ../shared/data beside the repository"
    return [root.parent / "shared" / "data" for root in roots], how


def shared_data_dir(*parts: str, env: Mapping[str, str] | None = None, cwd: Path | None = None,
                    must_exist: bool = True) -> Path:
    """The shared data folder, or ``parts`` under it (``shared_data_dir("nab")``).

    ``env`` defaults to ``os.environ`` and ``cwd`` to the working directory. With ``must_exist`` (the default) a
    folder that is not there raises :class:`DataNotFound` (a :class:`~stream.errors.ConfigError`: one line, exit
    status 2 from a command) naming every place it looked; otherwise the first place is returned all the same
    (``../shared/data`` from the working directory outside any checkout), so tests can skip with it in the
    reason.
    """
    candidates, how = _candidates(os.environ if env is None else env, cwd)
    found = [c.joinpath(*parts) for c in candidates]
    for path in found:
        if path.is_dir():
            return path
    if not must_exist:
        return found[0] if found else Path("..", "shared", "data", *parts)
    if not found:
        raise DataNotFound(f"shared data not found: no riskstream checkout above {Path(__file__).parent} or the "
                           f"working directory to look beside; set {DATA_ENV} to the data folder")
    what = "/".join(parts) or "the data folder"
    raise DataNotFound(f"shared data not found: {what} is not at {' nor '.join(str(p) for p in found)} ({how}); "
                       f"set {DATA_ENV} to the folder holding it")
