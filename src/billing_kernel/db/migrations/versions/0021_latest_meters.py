"""Latest meters: a metric may take the amount of the month's last event. Its counter keeps
where the line it took stands, and an invoice where the last line it billed stands, so a
later write or a late event is judged against them.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def _aggregations(allowed: str) -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint(op.f("ck_metrics_aggregation"), type_="check")
        batch.create_check_constraint(op.f("ck_metrics_aggregation"), f"aggregation IN ({allowed})")


def upgrade() -> None:
    for table in ("usage_counters", "invoice_usage"):
        op.add_column(table, sa.Column("last_at", UTCDateTime(), nullable=True))
        op.add_column(table, sa.Column("last_key", sa.String(length=255), nullable=True))
    _aggregations("'sum', 'count', 'max', 'latest', 'unique_count', 'seats'")


def downgrade() -> None:
    op.execute("DELETE FROM metrics WHERE aggregation = 'latest'")  # fails if in use
    _aggregations("'sum', 'count', 'max', 'unique_count', 'seats'")
    for table in ("usage_counters", "invoice_usage"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("last_key")
            batch.drop_column("last_at")
