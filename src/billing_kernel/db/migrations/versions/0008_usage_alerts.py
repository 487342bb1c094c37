"""Usage alerts: thresholds per plan metric (a plan's metric without a row of its own
alerts at 80 % and 100 % of its limit) and per org, the alert state of each (org, period,
metric, threshold), and the events the kernel emits, kept for every channel to deliver.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _org_scoped(table: str) -> None:
    """Row-level security as on every table of org data (see 0001)."""
    op.execute(f"GRANT SELECT ON {table} TO billing_user")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_member_orgs ON {table} "
        "USING (org_id IN (SELECT billing_user_org_ids()))"
    )


def _org_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["org_id"], ["orgs.org_id"], name=op.f(f"fk_{table}_org_id_orgs"), ondelete="CASCADE"
    )


def _metric_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["metric"], ["metrics.key"], name=op.f(f"fk_{table}_metric_metrics")
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "plan_alert_thresholds",
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("thresholds", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_slug"],
            ["plans.slug"],
            name=op.f("fk_plan_alert_thresholds_plan_slug_plans"),
            ondelete="CASCADE",
        ),
        _metric_fk("plan_alert_thresholds"),
        sa.PrimaryKeyConstraint("plan_slug", "metric", name=op.f("pk_plan_alert_thresholds")),
    )
    op.create_table(
        "org_alert_thresholds",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("thresholds", sa.String(length=200), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        _org_fk("org_alert_thresholds"),
        _metric_fk("org_alert_thresholds"),
        sa.PrimaryKeyConstraint("org_id", "metric", name=op.f("pk_org_alert_thresholds")),
    )
    op.create_table(
        "usage_alerts",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("threshold", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("crossings", sa.Integer(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("limit_quantity", sa.BigInteger(), nullable=True),
        sa.Column("crossed_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("dismissed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('crossed', 'resolved')", name=op.f("ck_usage_alerts_status")
        ),
        _org_fk("usage_alerts"),
        _metric_fk("usage_alerts"),
        sa.PrimaryKeyConstraint(
            "org_id", "period_start", "metric", "threshold", name=op.f("pk_usage_alerts")
        ),
    )
    op.create_table(
        "billing_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        _org_fk("billing_events"),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_billing_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_billing_events_event_id")),
    )
    op.create_index(op.f("ix_billing_events_org_id_seq"), "billing_events", ["org_id", "seq"])
    if postgres:
        for table in ("org_alert_thresholds", "usage_alerts", "billing_events"):
            _org_scoped(table)
        # A member's plan change (or a dismissed alert) writes its org's alerts as that
        # member, under the policies above.
        op.execute("GRANT SELECT ON plan_alert_thresholds TO billing_user")
        op.execute("GRANT INSERT, UPDATE ON usage_alerts TO billing_user")
        op.execute("GRANT INSERT ON billing_events TO billing_user")
        op.execute("GRANT USAGE ON SEQUENCE billing_events_seq_seq TO billing_user")


def downgrade() -> None:
    for table in (
        "billing_events",
        "usage_alerts",
        "org_alert_thresholds",
        "plan_alert_thresholds",
    ):
        op.drop_table(table)
