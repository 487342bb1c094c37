"""Max meters: a metric may keep the highest amount one event of the month carried. Its
lines and counters are those of any meter; only what the aggregation allows changes.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _aggregations(allowed: str) -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint(op.f("ck_metrics_aggregation"), type_="check")
        batch.create_check_constraint(op.f("ck_metrics_aggregation"), f"aggregation IN ({allowed})")


def upgrade() -> None:
    _aggregations("'sum', 'count', 'max', 'unique_count', 'seats'")


def downgrade() -> None:
    op.execute("DELETE FROM metrics WHERE aggregation = 'max'")  # fails if in use
    _aggregations("'sum', 'count', 'unique_count', 'seats'")
