"""``riskstream config``: the effective configuration."""

from __future__ import annotations

import click

from stream.cli.base import fail_cleanly
from stream.config import load_settings


@click.group()
def config() -> None:
    """Inspect configuration."""


@config.command("show")
@click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
              help="Config TOML laid over the defaults (default: the defaults and the environment alone).")
@fail_cleanly
def config_show(config: str | None) -> None:
    """Print the effective configuration (defaults + file + environment), its detection hash and which engine
    runs it (the compiled core, with detection in Python when a detector has no compiled version)."""
    from stream.compiled import engine_summary

    s = load_settings(config)
    click.echo(f"# source: {s.source}\n# config_hash: {s.config_hash}\n# engine: {engine_summary(s)}\n")
    click.echo(s.to_toml())
