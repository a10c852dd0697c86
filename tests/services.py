"""Addresses of the real servers the tests use: the environment's, else `scripts/services up`'s (never a skip)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SERVICES = Path(__file__).resolve().parent.parent / "scripts" / "services"


def service_env(name: str, *, use_environment: bool = True) -> str:
    """``$name`` if set (and ``use_environment``); else start the local services (a no-op when they run) and
    return what they export."""
    if use_environment and (value := os.environ.get(name)):
        return value
    up = subprocess.run([str(SERVICES), "up"], capture_output=True, text=True)
    if up.returncode != 0:
        raise RuntimeError(f"scripts/services up failed:\n{up.stderr[-3000:]}")
    out = subprocess.run([str(SERVICES), "env"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith(f"export {name}="):
            return line.split("=", 1)[1]
    raise RuntimeError(f"scripts/services env printed no {name}:\n{out}")
