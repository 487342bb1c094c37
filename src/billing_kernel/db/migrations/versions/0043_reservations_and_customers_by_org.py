"""A reservation's id and an org's Stripe customer id unique within the org, the next step
toward distributing every org's table by `org_id` on Citus (docs/scaling.md): each is
random or Stripe's, so the same rows stay unique; each is still found alone through an index
of its own. On PostgreSQL the unique index within the org is built before the one across the
deployment is dropped, in one transaction that holds writes to the two tables meanwhile.

Revision ID: 0043
Revises: 0042
"""

from __future__ import annotations

from alembic import op

revision = "0043"
down_revision = "0042"
branch_labels = None
depends_on = None

COLUMNS = {"usage_reservations": "reservation_id", "payment_customers": "stripe_customer_id"}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column in COLUMNS.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            batch.create_unique_constraint(f"uq_{table}_org_id_{column}", ["org_id", column])
            batch.create_index(f"ix_{table}_{column}", [column])
            batch.drop_constraint(f"uq_{table}_{column}", type_="unique")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, column in COLUMNS.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            batch.create_unique_constraint(f"uq_{table}_{column}", [column])
            batch.drop_index(f"ix_{table}_{column}")
            batch.drop_constraint(f"uq_{table}_org_id_{column}", type_="unique")
