"""Workloads' key stores: the highest certified key generation and a freshness counter (issue 13).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_stores",
        sa.Column("store_sha256", sa.String(64), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("subject_key_sha256", sa.String(64), nullable=False),
        sa.Column("counter", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("store_sha256", name="pk_key_stores"),
    )


def downgrade() -> None:
    op.drop_table("key_stores")
