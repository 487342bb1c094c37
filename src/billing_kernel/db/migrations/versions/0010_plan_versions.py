"""Plan versions: a plan's price and per-metric terms are kept per version, and each org
keeps the version it subscribed to until it changes plan.

Every existing plan becomes version 1 with its price and terms, and every org is on it, so
upgrading changes no limit and no price.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "plan_versions",
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("monthly_price", Money(precision=12, scale=2), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("version > 0", name=op.f("ck_plan_versions_version")),
        sa.ForeignKeyConstraint(
            ["plan_slug"],
            ["plans.slug"],
            name=op.f("fk_plan_versions_plan_slug_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_slug", "version", name=op.f("pk_plan_versions")),
    )
    op.execute(
        "INSERT INTO plan_versions (plan_slug, version, monthly_price, created_at) "
        "SELECT slug, 1, monthly_price, created_at FROM plans"
    )
    op.add_column("plans", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    # SQLite drops the column in place: rebuilding `plans` would delete, by cascade, the
    # rows that refer to it.
    op.execute("ALTER TABLE plans DROP COLUMN monthly_price")

    with op.batch_alter_table("plan_metrics") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), server_default="1", nullable=False))
        batch.drop_constraint("fk_plan_metrics_plan_slug_plans", type_="foreignkey")
        batch.drop_constraint("pk_plan_metrics", type_="primary")
        batch.create_primary_key("pk_plan_metrics", ["plan_slug", "version", "metric"])
        batch.create_foreign_key(
            "fk_plan_metrics_plan_slug_version_plan_versions",
            "plan_versions",
            ["plan_slug", "version"],
            ["plan_slug", "version"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("org_billing_state") as batch:
        batch.add_column(
            sa.Column("plan_version", sa.Integer(), server_default="1", nullable=False)
        )
        batch.create_foreign_key(
            "fk_org_billing_state_plan_slug_plan_version_plan_versions",
            "plan_versions",
            ["plan_slug", "plan_version"],
            ["plan_slug", "version"],
        )
    if postgres:
        op.execute("GRANT SELECT ON plan_versions TO billing_user")


def downgrade() -> None:
    """Back to one set of terms per plan: each plan's current version, and every org on it."""
    op.add_column("plans", sa.Column("monthly_price", Money(precision=12, scale=2), nullable=True))
    op.execute(
        "UPDATE plans SET monthly_price = (SELECT v.monthly_price FROM plan_versions v "
        "WHERE v.plan_slug = plans.slug AND v.version = plans.version)"
    )
    if op.get_bind().dialect.name == "postgresql":  # SQLite would rebuild `plans` (see above)
        op.alter_column("plans", "monthly_price", nullable=False)
    with op.batch_alter_table("org_billing_state") as batch:
        batch.drop_constraint(
            "fk_org_billing_state_plan_slug_plan_version_plan_versions", type_="foreignkey"
        )
        batch.drop_column("plan_version")
    op.execute(
        "DELETE FROM plan_metrics WHERE version <> (SELECT p.version FROM plans p "
        "WHERE p.slug = plan_metrics.plan_slug)"
    )
    with op.batch_alter_table("plan_metrics") as batch:
        batch.drop_constraint("fk_plan_metrics_plan_slug_version_plan_versions", type_="foreignkey")
        batch.drop_constraint("pk_plan_metrics", type_="primary")
        batch.create_primary_key("pk_plan_metrics", ["plan_slug", "metric"])
        batch.drop_column("version")
        batch.create_foreign_key(
            "fk_plan_metrics_plan_slug_plans",
            "plans",
            ["plan_slug"],
            ["slug"],
            ondelete="CASCADE",
        )
    op.drop_table("plan_versions")
    op.execute("ALTER TABLE plans DROP COLUMN version")
