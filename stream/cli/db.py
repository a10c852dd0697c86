"""``riskstream db upgrade|current``: create and migrate the database schema; the ``--db``/``--config`` options
the database commands share.

The database is ``--db URL``, else ``sinks.database`` from ``--config`` / ``RISKSTREAM_DATABASE_URL``. Its
password is never printed: messages name it as ``url.render_as_string(hide_password=True)``.
"""

from __future__ import annotations

import click

from stream.cli.base import fail_cleanly
from stream.config import load_settings
from stream.errors import ConfigError, SourceError

__all__ = ["db", "resolve_database", "check_db_option", "db_option", "config_option"]

def resolve_database(db: str | None, config: str | None) -> str:
    """``--db``, else ``sinks.database`` of the settings (config file, then ``RISKSTREAM_DATABASE_URL``)."""
    if db:
        return check_db_option(db)
    url = str(load_settings(config).sinks.get("database") or "")
    if not url:
        raise ConfigError(
            "no database: pass --db URL, set sinks.database in the config, or RISKSTREAM_DATABASE_URL")
    return url


def check_db_option(db: str, option: str = "--db") -> str:
    """``db`` if it is a database URL riskstream can use, else a :class:`ConfigError` (exit 2) saying why, with
    the password hidden."""
    from sinks.errors import DatabaseURLError
    from sinks.sql import check_database_url

    try:
        check_database_url(db)
    except DatabaseURLError as e:
        raise ConfigError(f"{option}: {e}") from None
    return db

db_option = click.option("--db", default=None, metavar="URL",
                         help="SQLAlchemy URL, e.g. postgresql+psycopg://user:pw@host:5432/db or "
                               "sqlite:///alerts.db (default: sinks.database / RISKSTREAM_DATABASE_URL).")
config_option = click.option("--config", "-c", type=click.Path(dir_okay=False), default=None,
                              help="Config TOML laid over the defaults (for sinks.database).")


@click.group("db")
def db() -> None:
    """Create and migrate the database schema (alerts, review feedback, checkpoints)."""


@db.command("upgrade")
@db_option
@config_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@fail_cleanly
def db_upgrade(db: str | None, config: str | None, revision: str) -> None:
    """Run the schema migrations up to REVISION (idempotent; safe while consumers run)."""
    from sinks.migrations import current, upgrade
    from sinks.sql import create_sql_engine, describe_error, hidden_url

    url = resolve_database(db, config)
    engine = create_sql_engine(url)
    try:
        before = current(engine)
        after = upgrade(engine, revision)
    except Exception as e:  # noqa: BLE001 - SQLAlchemy or Alembic; the message is cleaned of the password
        from alembic.util import CommandError
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, CommandError):
            raise ConfigError(f"--revision: {e}") from None
        if isinstance(e, SQLAlchemyError):
            reason, retriable = describe_error(e, engine.url.password)
            raise SourceError(f"cannot migrate {hidden_url(url)}: {reason}", retriable=retriable) from None
        raise
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"{hidden_url(url)}: schema already at revision {after}")
    else:
        click.echo(f"{hidden_url(url)}: schema upgraded from {before or '(empty)'} to {after}")


@db.command("current")
@db_option
@config_option
@fail_cleanly
def db_current(db: str | None, config: str | None) -> None:
    """Print the schema revision of the database and the newest one this riskstream ships."""
    from sinks.migrations import current, head
    from sinks.sql import create_sql_engine, describe_error, hidden_url

    url = resolve_database(db, config)
    engine = create_sql_engine(url)
    try:
        rev = current(engine)
    except Exception as e:  # noqa: BLE001
        from sqlalchemy.exc import SQLAlchemyError

        if isinstance(e, SQLAlchemyError):
            reason, retriable = describe_error(e, engine.url.password)
            raise SourceError(f"cannot read {hidden_url(url)}: {reason}", retriable=retriable) from None
        raise
    finally:
        engine.dispose()
    newest = head()
    state = "up to date" if rev == newest else "run `riskstream db upgrade`"
    click.echo(f"{hidden_url(url)}: revision {rev or '(empty)'}, newest {newest} ({state})")
