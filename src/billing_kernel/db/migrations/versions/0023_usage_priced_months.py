"""Months priced in full: an org month whose usage came to near the bound on amounts (a
1,024th of it) is noted, so that every later write to it prices the whole month and is
refused if it would take it beyond what an invoice may come to.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_priced_months",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("noted_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_priced_months_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "period_start", name=op.f("pk_usage_priced_months")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON usage_priced_months TO billing_user")
        op.execute("ALTER TABLE usage_priced_months ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY usage_priced_months_member_orgs ON usage_priced_months "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("usage_priced_months")
