"""The compiled core builds, its Rust unit tests pass, and its wheel installs and imports without a compiler.

``pip install -e .`` built ``stream._core`` before any of this ran (the README's test command installs first), so
these check what the install alone cannot: the Rust tests of the core's internals, and that a wheel built once
carries everything (the extension, the default configuration, the migrations) for a machine with no Rust.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CARGO = shutil.which("cargo")
needs_cargo = pytest.mark.skipif(CARGO is None and not os.environ.get("CI"),
                                 reason="cargo is not installed (CI always has it)")


def test_the_extension_is_the_projects_own_and_states_its_version() -> None:
    import stream._core as core

    assert Path(core.__file__).resolve().parent == (ROOT / "stream").resolve()
    assert isinstance(core.STATE_VERSION, int) and core.STATE_VERSION >= 1
    assert core.__version__ == _cargo_version()


@needs_cargo
def test_rust_unit_tests_pass() -> None:
    proc = subprocess.run(["cargo", "test", "--quiet", "--manifest-path", str(ROOT / "core" / "Cargo.toml")],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "test result: ok" in proc.stdout


@needs_cargo
def test_a_built_wheel_installs_and_imports_without_a_compiler(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)],
                           capture_output=True, text=True, timeout=1200)
    assert build.returncode == 0, build.stderr[-4000:]
    (wheel,) = wheels.glob("riskstream-*.whl")
    assert "abi3" in wheel.name  # one wheel for every CPython >= 3.11
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("stream/defaults/riskstream.toml", "sinks/migrations/script.py.mako", "stream/cli/__init__.py",
                   "detectors/hst.py", "sinks/sql.py", "sinks/migrations/versions/0007_console.py",
                   "sinks/migrations/versions/0008_rule_packs.py", "stream/console/templates/rules.html",
                   # the console's templates and stylesheet are package data: `riskstream console` needs them
                   "stream/console/templates/case.html", "stream/console/static/console.css"):
        assert needed in names, needed
    assert any(n.startswith("stream/_core") and n.endswith(".so") for n in names)

    # Install with no compiler reachable: PATH holds only the interpreter's directory, and CC/RUSTC point nowhere.
    target = tmp_path / "site"
    env = {"PATH": str(Path(sys.executable).parent), "CC": "/nonexistent", "RUSTC": "/nonexistent",
           "HOME": str(tmp_path)}
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, env=env, timeout=300)
    assert inst.returncode == 0, inst.stderr[-4000:]
    # The installed copy, not this checkout, must answer: run outside the repository with it first on the path
    # (the dependencies come from this environment's site-packages).
    probe = ("import stream, stream._core as c, stream.config as cfg; "
             "print(stream.__file__); print(c.__file__); print(c.STATE_VERSION); "
             "print(cfg.load_settings().budget)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={**env, "PYTHONPATH": str(target)}, timeout=120)
    assert run.returncode == 0, run.stderr[-4000:]
    stream_file, core_file, version, budget = run.stdout.split()
    assert Path(stream_file).is_relative_to(target) and Path(core_file).is_relative_to(target)
    assert int(version) >= 1 and float(budget) > 0


def _cargo_version() -> str:
    for line in (ROOT / "core" / "Cargo.toml").read_text().splitlines():
        if line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("core/Cargo.toml names no version")
