"""rule packs: versioned rule packs and the pointer to the active one

Revision ID: 0008
Revises: 0007

``rule_packs`` holds every version of the rules pack (the ``detectors.rules`` table as TOML text) with who stored
it, when, why, and the version that was active when it was stored (``parent_version``). ``rule_pack_active`` is
one row (``id = 1``) naming the active version: deploying and rolling back update that row, so a consumer can
poll one small row at a checkpoint boundary to learn whether the pack changed. Every change also writes a row to
``console_audit``.

Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "rule_packs",
        sa.Column("version", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("pack", sa.Text, nullable=False),
        sa.Column("author", sa.String(64), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
        sa.Column("parent_version", sa.Integer, nullable=True),
        sa.PrimaryKeyConstraint("version", name="pk_rule_packs"),
    )
    op.create_table(
        "rule_pack_active",
        sa.Column("id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("changed_at", _TS, nullable=False),
        sa.Column("changed_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rule_pack_active"),
        sa.CheckConstraint("id = 1", name="ck_rule_pack_active_one_row"),
    )


def downgrade() -> None:
    op.drop_table("rule_pack_active")
    op.drop_table("rule_packs")
