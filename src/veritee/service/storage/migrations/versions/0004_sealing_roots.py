"""The key broker's sealing root, wrapped by the KEK (domain-released sealing, issue 18.3).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sealing_roots",
        sa.Column("generation", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped_root", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("generation", name="pk_sealing_roots"),
    )


def downgrade() -> None:
    op.drop_table("sealing_roots")
