"""Shared by the panel's tests: the scripts under ``bench/panel/`` are not a package, so each is loaded from its
file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    """``bench/panel/<name>.py`` as a module (a fresh one at each call); the folder goes on ``sys.path`` for the
    scripts that import each other (``run`` imports ``fetch``)."""
    if str(ROOT / "bench" / "panel") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench" / "panel"))
    spec = importlib.util.spec_from_file_location(f"panel_{name}", ROOT / "bench" / "panel" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def panel_script():
    """``load_script``, for a test that needs one of the panel's scripts."""
    return load_script
