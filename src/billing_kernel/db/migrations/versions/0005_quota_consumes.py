"""Consumes: quota decisions that record the usage they allow in the same step, each kept
with its answer so that a retry with the same idempotency key gets the same answer.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quota_consumes",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("requested", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("included_quantity", sa.BigInteger(), nullable=True),
        sa.Column("remaining", sa.BigInteger(), nullable=True),
        sa.Column("enforcement", sa.String(length=8), nullable=False),
        sa.Column("grace_percent", sa.Integer(), nullable=False),
        sa.Column("grace_period_seconds", sa.Integer(), nullable=True),
        sa.Column("grace_ends_at", UTCDateTime(), nullable=True),
        sa.Column("status_blocks_at", UTCDateTime(), nullable=True),
        sa.Column("upgrade_plan", sa.String(length=64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.CheckConstraint("requested >= 0", name=op.f("ck_quota_consumes_requested")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_quota_consumes_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_quota_consumes_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", name=op.f("pk_quota_consumes")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Org-scoped like every table of org data (see 0001's row-level security).
        op.execute("GRANT SELECT ON quota_consumes TO billing_user")
        op.execute("ALTER TABLE quota_consumes ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY quota_consumes_member_orgs ON quota_consumes "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("quota_consumes")
