"""Subscription history: each change of an org's plan, plan version or billing status, from
the instant it was made, so that an invoice can bill each stretch of a period on what was
in force.

Existing orgs get the history their state tells: on their plan since their billing state
was created, in trial until their current status began (the only status before one is set),
and in their current status since.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "subscription_history",
        sa.Column(
            "change_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "status IN ('trial', 'active', 'past_due', 'canceled')",
            name=op.f("ck_subscription_history_status"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_subscription_history_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_slug", "plan_version"],
            ["plan_versions.plan_slug", "plan_versions.version"],
            name=op.f("fk_subscription_history_plan_slug_plan_version_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_subscription_history")),
    )
    op.create_index(
        op.f("ix_subscription_history_org_id_valid_from"),
        "subscription_history",
        ["org_id", "valid_from"],
    )
    op.execute(
        "INSERT INTO subscription_history (org_id, valid_from, plan_slug, plan_version, status) "
        "SELECT org_id, created_at, plan_slug, plan_version, 'trial' FROM org_billing_state "
        "WHERE status <> 'trial' AND status_since > created_at ORDER BY org_id"
    )
    op.execute(
        "INSERT INTO subscription_history (org_id, valid_from, plan_slug, plan_version, status) "
        "SELECT org_id, CASE WHEN status_since > created_at THEN status_since ELSE created_at "
        "END, plan_slug, plan_version, status FROM org_billing_state ORDER BY org_id"
    )
    if postgres:
        op.execute("GRANT SELECT ON subscription_history TO billing_user")
        op.execute("ALTER TABLE subscription_history ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY subscription_history_member_orgs ON subscription_history "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )
        # A member's plan change is written as that member, under the policy above.
        op.execute("GRANT INSERT ON subscription_history TO billing_user")
        op.execute("GRANT USAGE ON SEQUENCE subscription_history_change_id_seq TO billing_user")


def downgrade() -> None:
    op.drop_table("subscription_history")
