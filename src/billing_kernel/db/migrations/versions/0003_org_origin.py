"""Orgs record how they were created (an org made by a usage event for a mistyped id shows).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Orgs created before this revision: how is not known.
    op.add_column(
        "orgs",
        sa.Column("created_via", sa.String(length=16), server_default="unknown", nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("orgs") as batch:
        batch.drop_column("created_via")
