"""Features: what a plan version grants besides quantities (`plan_features`), and an org's
own value of a feature (`org_feature_overrides`, row-level secured on PostgreSQL like the
org's own limits). Two new tables; nothing existing changes.

Revision ID: 0050
Revises: 0049
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0050"
down_revision = "0049"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "plan_features",
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=400), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_slug", "version"],
            ["plan_versions.plan_slug", "plan_versions.version"],
            name=op.f("fk_plan_features_plan_slug_version_plan_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_slug", "version", "feature", name=op.f("pk_plan_features")),
    )
    op.create_table(
        "org_feature_overrides",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=400), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_org_feature_overrides_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "feature", name=op.f("pk_org_feature_overrides")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON plan_features, org_feature_overrides TO billing_user")
        op.execute("ALTER TABLE org_feature_overrides ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY org_feature_overrides_member_orgs ON org_feature_overrides "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("org_feature_overrides")
    op.drop_table("plan_features")
