"""rules version: the rule pack version every alert was scored under

Revision ID: 0009
Revises: 0008

``alerts.rules_version`` is the ``rule_packs.version`` the rules detector ran when the event was scored: a running
``riskstream run`` consumer switches to a newly deployed pack at a recorded point of each partition
(docs/console.md, "Live rule packs"), and stamps the version on every alert. NULL: the configuration's own rules
(no stored pack was applied), which is also what every alert stored before this migration carries.

Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alerts", sa.Column("rules_version", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("rules_version")
