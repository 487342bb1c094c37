"""Reservations: units held against a limit until the work they were made for is committed,
released or expires. Holds sit on the usage counter (`reserved`); each reservation is a row
of `usage_reservations`. Quota decisions kept for retries now include reservations' as well
as consumes': `quota_consumes` becomes `quota_decisions`, each row saying which it was.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_RENAMED_CONSTRAINTS = (
    ("pk_quota_consumes", "pk_quota_decisions"),
    ("fk_quota_consumes_metric_metrics", "fk_quota_decisions_metric_metrics"),
    ("fk_quota_consumes_org_id_orgs", "fk_quota_decisions_org_id_orgs"),
    ("ck_quota_consumes_requested", "ck_quota_decisions_requested"),
)


def _org_scoped(table: str) -> None:
    """Row-level security as on every table of org data (see 0001)."""
    op.execute(f"GRANT SELECT ON {table} TO billing_user")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_member_orgs ON {table} "
        "USING (org_id IN (SELECT billing_user_org_ids()))"
    )


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("usage_counters") as batch:
        batch.add_column(sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False))
        batch.create_check_constraint(op.f("ck_usage_counters_reserved"), "reserved >= 0")

    op.rename_table("quota_consumes", "quota_decisions")
    if postgres:
        for old, new in _RENAMED_CONSTRAINTS:
            op.execute(f"ALTER TABLE quota_decisions RENAME CONSTRAINT {old} TO {new}")
        op.execute(
            "ALTER POLICY quota_consumes_member_orgs ON quota_decisions "
            "RENAME TO quota_decisions_member_orgs"
        )
    # Every decision kept so far was a consume's, made before anything could be held.
    with op.batch_alter_table("quota_decisions") as batch:
        batch.add_column(
            sa.Column("operation", sa.String(length=8), server_default="consume", nullable=False)
        )
        batch.add_column(sa.Column("held", sa.BigInteger(), server_default="0", nullable=False))
        batch.create_check_constraint(
            op.f("ck_quota_decisions_operation"), "operation IN ('consume', 'reserve')"
        )
    with op.batch_alter_table("quota_decisions") as batch:
        batch.alter_column("operation", server_default=None, existing_type=sa.String(length=8))
        batch.alter_column("held", server_default=None, existing_type=sa.BigInteger())

    op.create_table(
        "usage_reservations",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("reservation_id", sa.String(length=36), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("estimate", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("reserved_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("committed_quantity", sa.BigInteger(), nullable=True),
        sa.Column("settled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("estimate >= 0", name=op.f("ck_usage_reservations_estimate")),
        sa.CheckConstraint(
            "status IN ('held', 'refused', 'committed', 'released', 'expired')",
            name=op.f("ck_usage_reservations_status"),
        ),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_reservations_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_reservations_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", name=op.f("pk_usage_reservations")),
        sa.UniqueConstraint("reservation_id", name=op.f("uq_usage_reservations_reservation_id")),
    )
    op.create_index(
        op.f("ix_usage_reservations_org_id_metric_status_expires_at"),
        "usage_reservations",
        ["org_id", "metric", "status", "expires_at"],
    )
    if postgres:
        _org_scoped("usage_reservations")


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.drop_table("usage_reservations")
    with op.batch_alter_table("quota_decisions") as batch:
        batch.drop_constraint(op.f("ck_quota_decisions_operation"), type_="check")
        batch.drop_column("held")
        batch.drop_column("operation")
    if postgres:
        op.execute(
            "ALTER POLICY quota_decisions_member_orgs ON quota_decisions "
            "RENAME TO quota_consumes_member_orgs"
        )
        for old, new in _RENAMED_CONSTRAINTS:
            op.execute(f"ALTER TABLE quota_decisions RENAME CONSTRAINT {new} TO {old}")
    op.rename_table("quota_decisions", "quota_consumes")
    with op.batch_alter_table("usage_counters") as batch:
        batch.drop_constraint(op.f("ck_usage_counters_reserved"), type_="check")
        batch.drop_column("reserved")
