"""riskstream_merge_decisions: the Kafka runtime's recorded idle-input decisions (cuts), append-only

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "riskstream_merge_decisions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String, nullable=False),
        sa.Column("unit", sa.Integer, nullable=False),
        sa.Column("cut", _JSON, nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_riskstream_merge_decisions"),
    )
    op.create_index(
        "ix_riskstream_merge_decisions_group_id_unit", "riskstream_merge_decisions", ["group_id", "unit", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_riskstream_merge_decisions_group_id_unit", table_name="riskstream_merge_decisions")
    op.drop_table("riskstream_merge_decisions")
