"""Scheduled plan changes: a downgrade an org asked for, to take effect when its billing
period ends (one per org, until it takes effect or is canceled).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scheduled_plan_changes",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_scheduled_plan_changes_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_slug", "plan_version"],
            ["plan_versions.plan_slug", "plan_versions.version"],
            name=op.f("fk_scheduled_plan_changes_plan_slug_plan_version_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_scheduled_plan_changes")),
    )
    op.create_index(
        op.f("ix_scheduled_plan_changes_effective_at"), "scheduled_plan_changes", ["effective_at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON scheduled_plan_changes TO billing_user")
        op.execute("ALTER TABLE scheduled_plan_changes ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY scheduled_plan_changes_member_orgs ON scheduled_plan_changes "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("scheduled_plan_changes")
