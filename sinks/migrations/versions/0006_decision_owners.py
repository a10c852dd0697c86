"""riskstream_decision_owners and riskstream_merge_decisions.owner: per-unit owner epochs that fence a zombie's cuts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05

A member that takes a unit over claims its decision log (the unit's ``epoch`` goes up by one); a cut is recorded
only under the latest epoch (``owner`` holds the epoch it was recorded under), so a member that lost the unit
cannot add to the log any more. Cuts recorded before this revision keep ``owner`` NULL and stay visible.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "riskstream_decision_owners",
        sa.Column("group_id", sa.String, nullable=False),
        sa.Column("unit", sa.Integer, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("member", sa.String, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "unit", name="pk_riskstream_decision_owners"),
        sa.CheckConstraint("epoch >= 1", name="ck_riskstream_decision_owners_epoch_positive"),
    )
    op.add_column("riskstream_merge_decisions", sa.Column("owner", sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("riskstream_merge_decisions") as batch:
        batch.drop_column("owner")
    op.drop_table("riskstream_decision_owners")
