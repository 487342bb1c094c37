"""Core schema: metrics, plans, orgs, members, billing state, usage; seeded plans; RLS.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 01:46:24.671747
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metrics",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("unit", sa.String(length=32), nullable=False),
        sa.Column("aggregation", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("aggregation IN ('sum', 'seats')", name=op.f("ck_metrics_aggregation")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_metrics")),
    )
    op.create_table(
        "orgs",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_orgs")),
    )
    op.create_table(
        "plans",
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("monthly_price", Money(precision=12, scale=2), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_plans")),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_users")),
    )
    op.create_table(
        "org_billing_state",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trial_ends_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('trial', 'active', 'past_due', 'canceled')",
            name=op.f("ck_org_billing_state_status"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_org_billing_state_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["plan_slug"], ["plans.slug"], name=op.f("fk_org_billing_state_plan_slug_plans")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_org_billing_state")),
    )
    op.create_table(
        "org_limit_overrides",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("included_quantity", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "included_quantity IS NULL OR included_quantity >= 0",
            name=op.f("ck_org_limit_overrides_included"),
        ),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_org_limit_overrides_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_org_limit_overrides_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "metric", name=op.f("pk_org_limit_overrides")),
    )
    op.create_table(
        "org_members",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member')", name=op.f("ck_org_members_role")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.org_id"], name=op.f("fk_org_members_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.user_id"],
            name=op.f("fk_org_members_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "user_id", name=op.f("pk_org_members")),
    )
    with op.batch_alter_table("org_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_org_members_user_id"), ["user_id"], unique=False)

    op.create_table(
        "plan_metrics",
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("included_quantity", sa.BigInteger(), nullable=True),
        sa.Column("overage_unit_price", Money(precision=18, scale=6), nullable=False),
        sa.Column("overage_unit_size", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "included_quantity IS NULL OR included_quantity >= 0",
            name=op.f("ck_plan_metrics_included"),
        ),
        sa.CheckConstraint("overage_unit_size > 0", name=op.f("ck_plan_metrics_unit_size")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_plan_metrics_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["plan_slug"],
            ["plans.slug"],
            name=op.f("fk_plan_metrics_plan_slug_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_slug", "metric", name=op.f("pk_plan_metrics")),
    )
    op.create_table(
        "usage_counters",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_counters_quantity")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_counters_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_counters_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "period_start", "metric", name=op.f("pk_usage_counters")),
    )
    op.create_table(
        "usage_events",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_events_quantity")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_events_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_events_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", name=op.f("pk_usage_events")),
    )
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_usage_events_org_id_period_start_metric"),
            ["org_id", "period_start", "metric"],
            unique=False,
        )
    _seed_catalogue()
    if op.get_bind().dialect.name == "postgresql":
        _install_row_level_security()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # The policies depend on the function and on org_members: they go first.
        op.execute("DROP POLICY IF EXISTS users_co_members ON users")
        op.execute("DROP FUNCTION IF EXISTS billing_user_org_ids() CASCADE")
    with op.batch_alter_table("usage_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_usage_events_org_id_period_start_metric"))

    op.drop_table("usage_events")
    op.drop_table("usage_counters")
    op.drop_table("plan_metrics")
    with op.batch_alter_table("org_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_org_members_user_id"))

    op.drop_table("org_members")
    op.drop_table("org_limit_overrides")
    op.drop_table("org_billing_state")
    op.drop_table("users")
    op.drop_table("plans")
    op.drop_table("orgs")
    op.drop_table("metrics")


# The default metric catalogue and the plans of the reference design, in USD.
METRICS = [
    ("tokens", "LLM tokens", "tokens", "sum"),
    ("playbook_runs", "Playbook runs", "runs", "sum"),
    ("seats", "Seats", "seats", "seats"),
]
# slug, name, monthly price, {metric: (included, overage unit price, overage unit size)}
PLANS = [
    (
        "internal-dev",
        "Internal (dev)",
        "0.00",
        {
            "tokens": (10_000_000, "0", 1000),
            "playbook_runs": (10_000, "0", 1),
            "seats": (100, "0", 1),
        },
    ),
    (
        "starter",
        "Starter",
        "49.00",
        {
            "tokens": (1_000_000, "0.02", 1000),
            "playbook_runs": (200, "0.25", 1),
            "seats": (3, "15.00", 1),
        },
    ),
    (
        "growth",
        "Growth",
        "199.00",
        {
            "tokens": (5_000_000, "0.015", 1000),
            "playbook_runs": (1_000, "0.20", 1),
            "seats": (10, "12.00", 1),
        },
    ),
    (
        "enterprise",
        "Enterprise",
        "599.00",
        {
            "tokens": (20_000_000, "0.01", 1000),
            "playbook_runs": (5_000, "0.15", 1),
            "seats": (50, "10.00", 1),
        },
    ),
]


def _seed_catalogue() -> None:
    now = datetime.now(UTC)
    metrics = sa.table(
        "metrics",
        sa.column("key"),
        sa.column("name"),
        sa.column("unit"),
        sa.column("aggregation"),
        sa.column("position"),
        sa.column("created_at", UTCDateTime()),
    )
    plans = sa.table(
        "plans",
        sa.column("slug"),
        sa.column("name"),
        sa.column("description"),
        sa.column("currency"),
        sa.column("monthly_price", Money(12, 2)),
        sa.column("is_active", sa.Boolean()),
        sa.column("created_at", UTCDateTime()),
        sa.column("updated_at", UTCDateTime()),
    )
    plan_metrics = sa.table(
        "plan_metrics",
        sa.column("plan_slug"),
        sa.column("metric"),
        sa.column("included_quantity", sa.BigInteger()),
        sa.column("overage_unit_price", Money(18, 6)),
        sa.column("overage_unit_size", sa.BigInteger()),
    )
    op.bulk_insert(
        metrics,
        [
            {"key": k, "name": n, "unit": u, "aggregation": a, "position": i, "created_at": now}
            for i, (k, n, u, a) in enumerate(METRICS)
        ],
    )
    op.bulk_insert(
        plans,
        [
            {
                "slug": slug,
                "name": name,
                "description": "",
                "currency": "USD",
                "monthly_price": Decimal(price),
                "is_active": True,
                "created_at": now,
                "updated_at": now,
            }
            for slug, name, price, _ in PLANS
        ],
    )
    op.bulk_insert(
        plan_metrics,
        [
            {
                "plan_slug": slug,
                "metric": metric,
                "included_quantity": included,
                "overage_unit_price": Decimal(unit_price),
                "overage_unit_size": unit_size,
            }
            for slug, _, _, terms in PLANS
            for metric, (included, unit_price, unit_size) in terms.items()
        ],
    )


ORG_SCOPED = [
    "orgs",
    "org_members",
    "org_billing_state",
    "org_limit_overrides",
    "usage_counters",
    "usage_events",
]


def _install_row_level_security() -> None:
    """Confine the `billing_user` role to the orgs of the user named in `billing.user_id`.

    The tables' owner (the role that runs migrations, which the kernel's own service
    connections use) is not subject to these policies; the kernel switches to `billing_user`
    for work done on behalf of a signed-in user.
    """
    op.execute("""
        DO $$ BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'billing_user') THEN
                CREATE ROLE billing_user NOLOGIN;
            END IF;
            EXECUTE format('GRANT USAGE ON SCHEMA %I TO billing_user', current_schema());
        END $$
    """)
    op.execute("GRANT billing_user TO CURRENT_USER")
    op.execute(
        "GRANT SELECT ON metrics, plans, plan_metrics, users, "
        + ", ".join(ORG_SCOPED)
        + " TO billing_user"
    )
    # SECURITY DEFINER runs as the owner, which RLS does not restrict, so the policy on
    # org_members can ask org_members without recursing into itself.
    op.execute("""
        CREATE FUNCTION billing_user_org_ids() RETURNS SETOF varchar
        LANGUAGE sql STABLE SECURITY DEFINER AS $$
            SELECT org_id FROM org_members
            WHERE user_id = current_setting('billing.user_id', true)
        $$
    """)
    op.execute("REVOKE ALL ON FUNCTION billing_user_org_ids() FROM PUBLIC")
    op.execute("GRANT EXECUTE ON FUNCTION billing_user_org_ids() TO billing_user")
    for table in ORG_SCOPED:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_member_orgs ON {table} "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )
    op.execute("ALTER TABLE users ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY users_co_members ON users USING ("
        "user_id = current_setting('billing.user_id', true) OR user_id IN ("
        "SELECT user_id FROM org_members WHERE org_id IN (SELECT billing_user_org_ids())))"
    )
