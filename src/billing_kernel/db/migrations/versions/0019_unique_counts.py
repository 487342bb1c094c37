"""Unique counts: a metric may count the distinct values of a property per month, which
needs the values it has seen.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _aggregations(allowed: str) -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint(op.f("ck_metrics_aggregation"), type_="check")
        batch.create_check_constraint(op.f("ck_metrics_aggregation"), f"aggregation IN ({allowed})")


def upgrade() -> None:
    op.create_table(
        "usage_unique_values",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_unique_values_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_unique_values_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "org_id", "period_start", "metric", "value", name=op.f("pk_usage_unique_values")
        ),
    )
    _aggregations("'sum', 'count', 'unique_count', 'seats'")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON usage_unique_values TO billing_user")
        op.execute("ALTER TABLE usage_unique_values ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY usage_unique_values_member_orgs ON usage_unique_values "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("usage_unique_values")
    op.execute("DELETE FROM metrics WHERE aggregation = 'unique_count'")  # fails if in use
    _aggregations("'sum', 'count', 'seats'")
