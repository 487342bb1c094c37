"""Prices per dimension: a plan metric may price the units of some values of an event
property apart (`plan_metrics.price_dimension`, the property, and `dimension_prices`, JSON:
each value with its price); an invoice line says which value it bills
(`invoice_lines.dimension`, `dimension_value`), and an invoice's usage what it billed of each
value (`invoice_usage.split`, JSON). Nullable columns only: every existing row NULL, priced
and billed as before; nothing is rewritten.

Revision ID: 0052
Revises: 0051
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0052"
down_revision = "0051"
branch_labels = None
depends_on = None

DIMENSION = "(price_dimension IS NULL) = (dimension_prices IS NULL)"


def upgrade() -> None:
    with op.batch_alter_table("plan_metrics") as batch:
        batch.add_column(sa.Column("price_dimension", sa.String(64), nullable=True))
        batch.add_column(sa.Column("dimension_prices", sa.Text(), nullable=True))
        batch.create_check_constraint(op.f("ck_plan_metrics_dimension"), DIMENSION)
    with op.batch_alter_table("invoice_lines") as batch:
        batch.add_column(sa.Column("dimension", sa.String(64), nullable=True))
        batch.add_column(sa.Column("dimension_value", sa.String(200), nullable=True))
    with op.batch_alter_table("invoice_usage") as batch:
        batch.add_column(sa.Column("split", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoice_usage") as batch:
        batch.drop_column("split")
    with op.batch_alter_table("invoice_lines") as batch:
        batch.drop_column("dimension_value")
        batch.drop_column("dimension")
    with op.batch_alter_table("plan_metrics") as batch:
        batch.drop_constraint(op.f("ck_plan_metrics_dimension"), type_="check")
        batch.drop_column("dimension_prices")
        batch.drop_column("price_dimension")
