"""Price models: a plan metric prices the units beyond those included by `price_model`
(`per_unit`, as every plan metric did until now, `graduated`, `volume` or `package`), the
tiered ones by `price_tiers` (JSON: each tier's `up_to`, `unit_price` and `flat_fee`).
Every existing row becomes `per_unit` with no tiers: what it charged, it charges.

Two columns added, with a default: nothing is rewritten on PostgreSQL, and writes go on.

Revision ID: 0049
Revises: 0048
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0049"
down_revision = "0048"
branch_labels = None
depends_on = None

MODELS = "price_model IN ('per_unit', 'graduated', 'volume', 'package')"
TIERS = "(price_tiers IS NOT NULL) = (price_model IN ('graduated', 'volume'))"


def upgrade() -> None:
    with op.batch_alter_table("plan_metrics") as batch:
        batch.add_column(
            sa.Column("price_model", sa.String(16), nullable=False, server_default="per_unit")
        )
        batch.add_column(sa.Column("price_tiers", sa.Text(), nullable=True))
        batch.create_check_constraint(op.f("ck_plan_metrics_price_model"), MODELS)
        batch.create_check_constraint(op.f("ck_plan_metrics_price_tiers"), TIERS)


def downgrade() -> None:
    with op.batch_alter_table("plan_metrics") as batch:
        batch.drop_constraint(op.f("ck_plan_metrics_price_tiers"), type_="check")
        batch.drop_constraint(op.f("ck_plan_metrics_price_model"), type_="check")
        batch.drop_column("price_tiers")
        batch.drop_column("price_model")
