"""Commands that live in their own modules register themselves on :data:`stream.cli.cli` when imported here.

Each module does ``from stream.cli import cli`` and ``@cli.command()``; a module listed here but not installed
(an optional part left out of a slim image) is skipped, while an error inside one that exists is raised.
"""

from __future__ import annotations

import importlib
import importlib.util

#: Modules that add commands to the CLI.
EXTENSIONS: tuple[str, ...] = ("stream.cli_run", "stream.cli_alerts", "stream.cli_db", "stream.cli_nab",
                               "stream.cli_compare")

for _name in EXTENSIONS:
    if importlib.util.find_spec(_name) is not None:
        importlib.import_module(_name)
