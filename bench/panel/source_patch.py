"""Run one ``riskstream`` command on the Python reference engine with a piece of it changed: how the panel's patch
experiments try an idea on every stream before it is worth building into both engines. ``interpolated_windows.py``
rewrites a module's source (`patched`, `install`: each replaced piece must be found, or it stops);
``zscore_scale_floor.py`` wraps a method. Both run their command through `run`."""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def patched(path: str, replacements: Sequence[tuple[str, str]], who: str) -> str:
    """The source of ``path`` (relative to the repository) with each ``(old, new)`` replaced."""
    src = (ROOT / path).read_text()
    for old, new in replacements:
        if old not in src:
            raise SystemExit(f"{who}: {path} changed, not found: {old.strip()[:60]!r}")
        src = src.replace(old, new)
    return src


def install(module: str, path: str, source: str) -> None:
    """Import ``module`` (at ``path``) from ``source``, before anything else imports it."""
    importlib.import_module(module.rsplit(".", 1)[0])  # the package, so the submodule can be registered under it
    spec = importlib.util.spec_from_file_location(module, ROOT / path)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module] = mod
    exec(compile(source, str(ROOT / path), "exec"), mod.__dict__)  # noqa: S102


def run(argv: Sequence[str], who: str) -> None:
    """The ``riskstream`` command ``argv`` on the Python engine: its ``-c`` file (if any) with ``[engine] core =
    "python"`` added."""
    from stream.cli import main as cli

    args = list(argv)
    text = ""
    for flag in ("-c", "--config"):
        if flag in args:
            i = args.index(flag)
            text = Path(args[i + 1]).read_text()
            del args[i : i + 2]
    if "[engine]" in text:
        raise SystemExit(f"{who}: the configuration has its own [engine] table; drop it")
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as fh:
        fh.write(text + '\n[engine]\ncore = "python"\n')
    cli([*args, "-c", fh.name])
