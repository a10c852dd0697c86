"""alerts table with its entity/time and severity/time indexes

Adopts a database whose ``alerts`` table was made before migrations existed (by ``create_all``): the table
and each index are created only where missing.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
_TS = sa.DateTime(timezone=True)
_INDEXES = {
    "ix_alerts_entity_key_event_ts": ["entity_key", "event_ts"],
    "ix_alerts_severity_event_ts": ["severity", "event_ts"],
}


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    if not insp.has_table("alerts"):
        op.create_table(
            "alerts",
            sa.Column("alert_id", sa.String(64), nullable=False),
            sa.Column("event_id", sa.String, nullable=False),
            sa.Column("event_type", sa.String, nullable=False),
            sa.Column("entity_key", sa.String, nullable=False),
            sa.Column("user_id", sa.String, nullable=True),
            sa.Column("entities", _JSON, nullable=False),
            sa.Column("event_ts", _TS, nullable=False),
            sa.Column("detected_at", _TS, nullable=False),
            sa.Column("score", sa.Float, nullable=False),
            sa.Column("severity", sa.String, nullable=False),
            sa.Column("action", sa.String, nullable=False),
            sa.Column("reasons", _JSON, nullable=False),
            sa.Column("detector_scores", _JSON, nullable=False),
            sa.Column("config_hash", sa.String, nullable=False),
            sa.Column("topic", sa.String, nullable=True),
            sa.Column("partition", sa.Integer, nullable=True),
            sa.Column("offset", sa.BigInteger, nullable=True),
            sa.Column("schema_version", sa.Integer, nullable=False),
            sa.PrimaryKeyConstraint("alert_id", name="pk_alerts"),
        )
        existing: set[str] = set()
    else:
        existing = {str(ix["name"]) for ix in insp.get_indexes("alerts") if ix.get("name")}
    for name, cols in _INDEXES.items():
        if name not in existing:
            op.create_index(name, "alerts", cols)


def downgrade() -> None:
    op.drop_table("alerts")
