"""Enforcement policies: how each plan enforces each metric's limit, orgs' own terms for any
part of it, when an org's status last changed, and when usage crossed a limit.

Every existing plan term stays soft and every existing override keeps replacing only the
limit, so upgrading changes no decision until an operator opts in.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_POLICY_CHECKS = (
    ("enforcement", "enforcement IN ('soft', 'hard')"),
    ("grace_percent", "grace_percent >= 0"),
    ("grace_period", "grace_period_seconds > 0"),
)


def upgrade() -> None:
    with op.batch_alter_table("plan_metrics") as batch:
        batch.add_column(
            sa.Column("enforcement", sa.String(length=8), server_default="soft", nullable=False)
        )
        batch.add_column(
            sa.Column("grace_percent", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(sa.Column("grace_period_seconds", sa.Integer(), nullable=True))
        for name, condition in _POLICY_CHECKS:
            batch.create_check_constraint(op.f(f"ck_plan_metrics_{name}"), condition)
    with op.batch_alter_table("org_limit_overrides") as batch:
        # Overrides made before this revision replace the limit and nothing else.
        batch.add_column(
            sa.Column("included_set", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(sa.Column("enforcement", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("grace_percent", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("grace_period_set", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("grace_period_seconds", sa.Integer(), nullable=True))
        for name, condition in _POLICY_CHECKS:
            batch.create_check_constraint(op.f(f"ck_org_limit_overrides_{name}"), condition)
    # Nothing could change an org's status before this revision: it has had it since the
    # org's billing state was created.
    op.add_column("org_billing_state", sa.Column("status_since", UTCDateTime(), nullable=True))
    op.execute("UPDATE org_billing_state SET status_since = created_at")
    with op.batch_alter_table("org_billing_state") as batch:
        batch.alter_column("status_since", existing_type=UTCDateTime(), nullable=False)
    op.add_column("usage_counters", sa.Column("crossed_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_counters") as batch:
        batch.drop_column("crossed_at")
    with op.batch_alter_table("org_billing_state") as batch:
        batch.drop_column("status_since")
    with op.batch_alter_table("org_limit_overrides") as batch:
        for name, _ in _POLICY_CHECKS:
            batch.drop_constraint(op.f(f"ck_org_limit_overrides_{name}"), type_="check")
        for column in (
            "grace_period_seconds",
            "grace_period_set",
            "grace_percent",
            "enforcement",
            "included_set",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("plan_metrics") as batch:
        for name, _ in _POLICY_CHECKS:
            batch.drop_constraint(op.f(f"ck_plan_metrics_{name}"), type_="check")
        for column in ("grace_period_seconds", "grace_percent", "enforcement"):
            batch.drop_column(column)
