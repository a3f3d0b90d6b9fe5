"""Facts every replica of a domain must agree on, recorded once: the KEK's identifier
(issue 12.4; a replica whose KEK differs refuses to start).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
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
        "domain_facts",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_domain_facts"),
    )


def downgrade() -> None:
    op.drop_table("domain_facts")
