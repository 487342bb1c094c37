"""Changed repeats, read back: `usage_repeats` counts, per org and key, how often an
incumbent's protocol was sent a key again with another payload and answered it as a
duplicate (as OpenMeter and Polar do), and when last.

Revision ID: 0037
Revises: 0036
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_repeats",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("times", sa.BigInteger(), nullable=False),
        sa.Column("last_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("times > 0", name=op.f("ck_usage_repeats_times")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_repeats_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", name=op.f("pk_usage_repeats")),
    )
    if op.get_bind().dialect.name == "postgresql":  # read as the org's own, like its events
        op.execute("GRANT SELECT ON usage_repeats TO billing_user")
        op.execute("ALTER TABLE usage_repeats ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY usage_repeats_member_orgs ON usage_repeats "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("usage_repeats")
