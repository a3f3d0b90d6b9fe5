"""Attested Trustee KBS sessions, held by the database so any worker or replica serves them.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kbs_sessions",
        sa.Column("session_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_sha256", name="pk_kbs_sessions"),
    )
    op.create_index("ix_kbs_sessions_expires_at", "kbs_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_kbs_sessions_expires_at", table_name="kbs_sessions")
    op.drop_table("kbs_sessions")
