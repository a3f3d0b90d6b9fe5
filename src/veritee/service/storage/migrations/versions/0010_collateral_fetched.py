"""Collateral the service fetched from AMD KDS / Intel PCS (or a PCCS), shared by every worker
and replica, with each item's refresh state (issue 16, "Collateral that stays fresh").

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "collateral_fetched",
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("fetched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_try", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(400), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_holder", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("path", name="pk_collateral_fetched"),
    )


def downgrade() -> None:
    op.drop_table("collateral_fetched")
