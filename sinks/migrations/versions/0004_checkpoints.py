"""riskstream_checkpoints: per (consumer group, unit) engine state, offsets, SHA-256 and HMAC

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "riskstream_checkpoints",
        sa.Column("group_id", sa.String, nullable=False),
        sa.Column("unit", sa.Integer, nullable=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("hmac", sa.String(64), nullable=False),
        sa.Column("offsets", _JSON, nullable=False),
        sa.Column("config_hash", sa.String, nullable=False),
        sa.Column("events", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.Column("saved_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "unit", name="pk_riskstream_checkpoints"),
        sa.CheckConstraint("unit >= 0", name="ck_riskstream_checkpoints_unit_nonnegative"),
    )


def downgrade() -> None:
    op.drop_table("riskstream_checkpoints")
