"""alerts: index event time alone (time-range scans) and event id (joins with review feedback)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_event_ts", "alerts", ["event_ts"])
    op.create_index("ix_alerts_event_id", "alerts", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_event_id", table_name="alerts")
    op.drop_index("ix_alerts_event_ts", table_name="alerts")
