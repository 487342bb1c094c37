"""The demo's plans and metrics leave the schema; the default plan is the database's.

The first migration seeded the reference design's catalogue (internal-dev, Starter, Growth,
Enterprise; tokens, playbook runs, seats) into every database, so a deployment offered
them to its customers. From here `billing-kernel demo` seeds them, and `migrate` makes only
the schema. On upgrade:

- a database with no org yet loses the seeded catalogue whole (metrics too, unless a plan
  of the operator's own names one);
- otherwise a seeded plan goes only if nothing ever referred to it (no org, history,
  scheduled change or invoice) and it is still at its first version; the metrics stay;
- the default plan, which was the setting BILLING_DEFAULT_PLAN_SLUG (falling back to
  internal-dev), becomes a mark on one plan (`plans.is_default`): the plan that setting
  names where this runs, if it exists and is offered, else internal-dev if it is still
  there and offered, else none (new orgs are then refused until the operator names one).

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

SEEDED_PLANS = ("internal-dev", "starter", "growth", "enterprise")
SEEDED_METRICS = ("tokens", "playbook_runs", "seats")
PLAN_REFERENCES = (
    ("org_billing_state", "plan_slug"),
    ("subscription_history", "plan_slug"),
    ("scheduled_plan_changes", "plan_slug"),
    ("invoices", "plan_slug"),
    ("invoice_lines", "plan_slug"),
)


def upgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.create_index(
            "uq_plans_one_default",
            ["is_default"],
            unique=True,
            sqlite_where=sa.text("is_default"),
            postgresql_where=sa.text("is_default"),
        )
    bind = op.get_bind()
    seeded = ", ".join(f"'{slug}'" for slug in SEEDED_PLANS)
    unused = " AND ".join(
        f"NOT EXISTS (SELECT 1 FROM {table} WHERE {table}.{column} = plans.slug)"
        for table, column in PLAN_REFERENCES
    )
    gone = [
        row.slug
        for row in bind.execute(
            sa.text(f"SELECT slug FROM plans WHERE slug IN ({seeded}) AND version = 1 AND {unused}")
        )
    ]
    # Children first: SQLite migrates with its foreign keys (and so their cascades) off.
    for table in ("plan_alert_thresholds", "plan_metrics", "plan_versions", "plans"):
        column = "slug" if table == "plans" else "plan_slug"
        for slug in gone:
            bind.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :slug"), {"slug": slug})
    if bind.execute(sa.text("SELECT count(*) FROM orgs")).scalar_one() == 0:
        metrics = ", ".join(f"'{key}'" for key in SEEDED_METRICS)
        bind.execute(
            sa.text(
                f"DELETE FROM metrics WHERE key IN ({metrics}) AND NOT EXISTS "
                "(SELECT 1 FROM plan_metrics WHERE plan_metrics.metric = metrics.key)"
            )
        )
    for slug in (os.environ.get("BILLING_DEFAULT_PLAN_SLUG"), "internal-dev"):
        marked = bind.execute(
            sa.text("UPDATE plans SET is_default = true WHERE slug = :slug AND is_active"),
            {"slug": slug},
        )
        if marked.rowcount:
            break


def downgrade() -> None:
    with op.batch_alter_table("plans", schema=None) as batch_op:
        batch_op.drop_index("uq_plans_one_default")
        batch_op.drop_column("is_default")
