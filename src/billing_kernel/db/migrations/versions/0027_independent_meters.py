"""Meters are independent: a meter that cannot read its property from an event skips it
(counted per org and month in `usage_skips`), and the event still counts toward the other
meters; only a meter marked `required` refuses such an event.

Every existing meter that reads a property (all but counts and seats) is marked required:
it refused such events until now, and a billed unit that was refused must not start being
dropped quietly on upgrade. The operator marks reporting meters not required
(`PUT /api/v1/billing/metrics/{key}` with `"required": false`), after which they no longer
make other meters refuse an event. Meters defined from here are not required unless said.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("required", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute(
        "UPDATE metrics SET required = true "
        "WHERE aggregation IN ('sum', 'max', 'latest', 'unique_count')"
    )
    op.create_table(
        "usage_skips",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("events > 0", name=op.f("ck_usage_skips_events")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_skips_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_skips_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "period_start", "metric", name=op.f("pk_usage_skips")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON usage_skips TO billing_user")
        op.execute("ALTER TABLE usage_skips ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY usage_skips_member_orgs ON usage_skips "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.drop_table("usage_skips")
    with op.batch_alter_table("metrics", schema=None) as batch_op:
        batch_op.drop_column("required")
