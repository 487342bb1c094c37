"""Org aliases: the other names an org goes by, such as the customer id another billing
system gave it, so that events sent with that id count for the org.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "org_aliases",
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_org_aliases_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alias", name=op.f("pk_org_aliases")),
    )
    op.create_index(op.f("ix_org_aliases_org_id"), "org_aliases", ["org_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_org_aliases_org_id"), table_name="org_aliases")
    op.drop_table("org_aliases")
