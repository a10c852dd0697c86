"""Versioned schema of riskstream's database: Alembic migrations shipped inside the ``sinks`` package.

The revisions in ``versions/`` create and evolve the tables of :data:`sinks.sql.metadata`: ``alerts``,
``review_feedback`` and ``riskstream_checkpoints``. They run on PostgreSQL and SQLite alike. Their version is
kept in the table ``riskstream_schema_version`` (not Alembic's default name, so an application that shares
the database with its own Alembic history is left alone).

Run them with :func:`upgrade` (``SqlSink(create=True)``, ``PgStateStore(create=True)`` and
``riskstream db upgrade`` all do). On PostgreSQL the upgrade runs in one transaction under an advisory lock,
so processes that start together do not race, and a failed upgrade leaves the schema as it was.

>>> from sqlalchemy import create_engine
>>> engine = create_engine("sqlite://")
>>> current(engine) is None
True
>>> upgrade(engine) == head()
True
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, text

from sinks.errors import SinkError

__all__ = ["upgrade", "current", "head", "history", "VERSION_TABLE", "ADVISORY_LOCK_KEY"]

#: The table that records the schema revision.
VERSION_TABLE = "riskstream_schema_version"
#: ``pg_advisory_xact_lock`` key taken while migrating (a fixed 63-bit number: "riskstream-schema").
ADVISORY_LOCK_KEY = 0x7269736B5F736368
_HERE = Path(__file__).resolve().parent


def _config(connection: Connection | None = None):  # -> alembic.config.Config
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(bind: Engine | Connection, revision: str = "head") -> str | None:
    """Migrate the database to ``revision`` (default: the newest) and return the revision it is at.

    Given an :class:`~sqlalchemy.Engine`, runs in a transaction of its own; given a
    :class:`~sqlalchemy.Connection`, runs in (and leaves uncommitted) the connection's transaction.
    Errors are SQLAlchemy's (and Alembic's ``CommandError`` for an unknown target ``revision``); a database
    already at a revision this version does not know (a newer riskstream migrated it) is a
    :class:`~sinks.errors.SinkError` naming it.
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            return upgrade(conn, revision)
    from alembic import command

    if bind.dialect.name == "postgresql":
        bind.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
    at = current(bind)
    known = {r for r, _ in history()}
    if at is not None and at not in known:
        raise SinkError(f"the database schema is at revision {at}, which this riskstream does not know (its "
                        f"newest is {head()}): a newer riskstream migrated it; upgrade riskstream, or use another "
                        "database")
    command.upgrade(_config(bind), revision)
    return current(bind)


def current(bind: Engine | Connection) -> str | None:
    """The revision the database is at, or None if riskstream's schema was never migrated there."""
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return current(conn)
    from alembic.runtime.migration import MigrationContext

    ctx = MigrationContext.configure(bind, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def head() -> str:
    """The newest revision shipped with this version of riskstream."""
    from alembic.script import ScriptDirectory

    rev = ScriptDirectory.from_config(_config()).get_current_head()
    assert rev is not None
    return rev


def history() -> list[tuple[str, str]]:
    """``(revision, description)`` of every shipped revision, oldest first."""
    from alembic.script import ScriptDirectory

    revs = list(ScriptDirectory.from_config(_config()).walk_revisions())
    return [(r.revision, (r.doc or "").strip()) for r in reversed(revs)]
