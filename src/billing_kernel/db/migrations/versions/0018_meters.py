"""Meters: a metric counts named events (its own key, or the names it lists), as the sum of
an amount property or as how many there are, with equality filters on other properties.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("metrics") as batch:
        batch.add_column(sa.Column("events", sa.Text(), nullable=True))
        batch.add_column(sa.Column("value_property", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("filters", sa.Text(), nullable=True))
        batch.drop_constraint(op.f("ck_metrics_aggregation"), type_="check")
        batch.create_check_constraint(
            op.f("ck_metrics_aggregation"), "aggregation IN ('sum', 'count', 'seats')"
        )


def downgrade() -> None:
    op.execute("DELETE FROM metrics WHERE aggregation = 'count'")  # fails if any is in use
    with op.batch_alter_table("metrics") as batch:
        batch.drop_constraint(op.f("ck_metrics_aggregation"), type_="check")
        batch.create_check_constraint(
            op.f("ck_metrics_aggregation"), "aggregation IN ('sum', 'seats')"
        )
        batch.drop_column("filters")
        batch.drop_column("value_property")
        batch.drop_column("events")
