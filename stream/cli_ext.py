"""Commands that live in their own modules register themselves on :data:`stream.cli.cli` when imported here."""

from __future__ import annotations

import importlib

#: Modules that add commands to the CLI (each does ``@cli.command()`` at import).
EXTENSIONS: tuple[str, ...] = ()

for _name in EXTENSIONS:
    importlib.import_module(_name)
