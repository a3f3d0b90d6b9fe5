"""A secret version says whether older versions keep their own release policies (issue 12.3).

By default (false) a release of an older version must also satisfy the newest version's
policy; an operator sets it to true explicitly at rotation.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.add_column(
            sa.Column(
                "keep_old_policies",
                sa.Boolean(create_constraint=False),
                nullable=False,
                server_default=sa.false(),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("secrets") as batch:
        batch.drop_column("keep_old_policies")
