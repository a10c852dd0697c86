"""Alembic environment: migrations run on a connection handed in by :func:`sinks.migrations.upgrade`.

``config.attributes["connection"]`` is that connection; with none (the ``alembic`` command line with
``-x url=...``), an engine is made from the ``url`` argument or ``sqlalchemy.url``.

The ``riskstream_checkpoints`` table (revision 0004) belongs to the PostgreSQL state store and is defined with
it, in ``stream.state.postgres``, which joins it to the same :data:`sinks.sql.metadata` when imported (sinks
never import stream). Import that module too before comparing the metadata to a database, as the schema test
does.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

import sinks.feedback  # noqa: F401  (registers review_feedback in the metadata)
from sinks.migrations import VERSION_TABLE
from sinks.sql import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("riskstream migrations run online only: give them a database connection")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = (context.get_x_argument(as_dictionary=True).get("url")
           or context.config.get_main_option("sqlalchemy.url"))
    if not url:
        raise SystemExit("no database: pass -x url=postgresql+psycopg://... or set sqlalchemy.url")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
