"""The subscription history keyed by org, (org_id, change_id), the next step toward
distributing every org's table by `org_id` on Citus (docs/scaling.md). On PostgreSQL a
change's number stays its sequence's; on SQLite, where only a lone integer key numbers itself,
the kernel's insert gives it from here on (db/history.py). A few rows per org: on PostgreSQL
one transaction holds the table while its key is rebuilt, during which changes of plan and
status wait.

Revision ID: 0045
Revises: 0044
"""

from __future__ import annotations

from alembic import op

revision = "0045"
down_revision = "0044"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _key(["org_id", "change_id"])


def downgrade() -> None:
    _key(["change_id"])


def _key(columns: list[str]) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    with op.batch_alter_table(
        "subscription_history", recreate="always" if sqlite else "auto"
    ) as batch:
        batch.drop_constraint("pk_subscription_history", type_="primary")
        batch.create_primary_key("pk_subscription_history", columns)
