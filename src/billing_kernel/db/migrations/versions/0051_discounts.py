"""Discounts: coupons (`coupons`), the orgs they are applied to (`coupon_redemptions`,
row-level secured on PostgreSQL like every org's own rows), and the coupon of an invoice's
discount line (`invoice_lines.coupon`). Two new tables and a nullable column; nothing
existing changes.

Revision ID: 0051
Revises: 0050
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0051"
down_revision = "0050"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("value", Money(14, 2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=10), nullable=False),
        sa.Column("periods", sa.Integer(), nullable=True),
        sa.Column("plans", sa.Text(), nullable=True),
        sa.Column("applies_to", sa.Text(), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("redeem_by", UTCDateTime(), nullable=True),
        sa.Column("redemptions", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("value > 0", name=op.f("ck_coupons_value")),
        sa.CheckConstraint(
            "redemptions >= 0 AND (max_redemptions IS NULL OR redemptions <= max_redemptions)",
            name=op.f("ck_coupons_redemptions"),
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_coupons")),
    )
    op.create_table(
        "coupon_redemptions",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("coupon", sa.String(length=64), nullable=False),
        sa.Column("redeemed_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["coupon"], ["coupons.code"], name=op.f("fk_coupon_redemptions_coupon_coupons")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_coupon_redemptions_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "coupon", name=op.f("pk_coupon_redemptions")),
    )
    with op.batch_alter_table("invoice_lines") as batch:
        batch.add_column(sa.Column("coupon", sa.String(length=64), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON coupons, coupon_redemptions TO billing_user")
        op.execute("ALTER TABLE coupon_redemptions ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY coupon_redemptions_member_orgs ON coupon_redemptions "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_column("coupon")
    op.drop_table("coupon_redemptions")
    op.drop_table("coupons")
