"""console: the analyst console's users and audit trail, and an index for its case queue

Revision ID: 0007
Revises: 0006

Numbered 0007 because another branch adds 0006; when the branches merge, ``down_revision`` becomes "0006".

Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "console_users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_console_users"),
        sa.CheckConstraint("role IN ('analyst', 'admin')", name="ck_console_users_role"),
    )
    op.create_table(
        "console_audit",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("target", sa.String, nullable=True),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_console_audit"),
    )
    op.create_index("ix_console_audit_ts", "console_audit", ["ts"])
    # the case queue reads alerts by score, highest first, in keyset chunks (ConsoleStore.cases); the case page
    # reads one entity's alerts by (entity_key, event_ts), indexed since 0002
    op.create_index("ix_alerts_score_alert_id", "alerts", ["score", "alert_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_score_alert_id", table_name="alerts")
    op.drop_index("ix_console_audit_ts", table_name="console_audit")
    op.drop_table("console_audit")
    op.drop_table("console_users")
