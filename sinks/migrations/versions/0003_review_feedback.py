"""review_feedback: review outcomes and chargebacks, the source of label events

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_feedback",
        sa.Column("feedback_id", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("user_id", sa.String, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("ts", _TS, nullable=False),
        sa.Column("reviewer", sa.String, nullable=True),
        sa.Column("imported_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("feedback_id", name="pk_review_feedback"),
        sa.CheckConstraint("outcome IN ('fraud', 'legit')", name="ck_review_feedback_outcome"),
        sa.CheckConstraint("source IN ('review', 'chargeback')", name="ck_review_feedback_source"),
    )
    op.create_index("ix_review_feedback_event_id", "review_feedback", ["event_id"])
    op.create_index("ix_review_feedback_alert_id", "review_feedback", ["alert_id"])
    op.create_index("ix_review_feedback_ts", "review_feedback", ["ts"])


def downgrade() -> None:
    op.drop_table("review_feedback")
