"""Event retention: `usage_forgotten_months` records the months whose events and lines
were forgotten past BILLING_EVENT_RETENTION_MONTHS, so that their invoices are verified
against the usage they recorded.

Revision ID: 0040
Revises: 0039
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0040"
down_revision = "0039"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_forgotten_months",
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("began_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("period_start", name=op.f("pk_usage_forgotten_months")),
    )
    if op.get_bind().dialect.name == "postgresql":  # read with an org's invoices, by anyone
        op.execute("GRANT SELECT ON usage_forgotten_months TO billing_user")


def downgrade() -> None:
    op.drop_table("usage_forgotten_months")
