"""Reference values from their sources (issue 17): registered CoRIMs and their values.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refvalue_sources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_name", sa.String(64), nullable=False),
        sa.Column("file_name", sa.String(400), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("corim_id", sa.String(200), nullable=True),
        sa.Column("profile", sa.String(400), nullable=True),
        sa.Column("scheme", sa.String(32), nullable=True),
        sa.Column("signer_name", sa.String(200), nullable=True),
        sa.Column("signer_key_sha256", sa.String(64), nullable=True),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_reason", sa.String(400), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_refvalue_sources"),
        sa.UniqueConstraint("set_name", "sha256", name="uq_refvalue_sources_set_name_sha256"),
    )
    op.create_table(
        "refvalue_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=False),
        sa.Column("set_name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("alg", sa.String(40), nullable=False),
        sa.Column("mkey", sa.String(400), nullable=False),
        sa.Column("environment", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_refvalue_entries"),
    )
    op.create_index("ix_refvalue_entries_source_id", "refvalue_entries", ["source_id"])
    op.create_index("ix_refvalue_entries_set_name_value", "refvalue_entries", ["set_name", "value"])


def downgrade() -> None:
    op.drop_index("ix_refvalue_entries_set_name_value", table_name="refvalue_entries")
    op.drop_index("ix_refvalue_entries_source_id", table_name="refvalue_entries")
    op.drop_table("refvalue_entries")
    op.drop_table("refvalue_sources")
