"""Events no metric counts, read back: `usage_events.counted` (false for an event with no
line: a protocol's event of a name no metric counts, or one no metric's filters admit) and a
partial index of those, so the events read-back lists them in time order without scanning
the counted ones. On PostgreSQL the column's constant default changes the catalogue only (no
rewrite); the backfill reads named events only (reports of a quantity always have a line).

Revision ID: 0036
Revises: 0035
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(
            sa.Column("counted", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    op.execute(
        "UPDATE usage_events SET counted = false WHERE quantity IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM usage_lines l WHERE l.org_id = usage_events.org_id "
        "AND l.idempotency_key = usage_events.idempotency_key)"
    )
    op.create_index(
        "ix_usage_events_uncounted",
        "usage_events",
        ["org_id", "occurred_at", "idempotency_key"],
        postgresql_where=sa.text("NOT counted"),
        sqlite_where=sa.text("NOT counted"),
    )


def downgrade() -> None:
    op.drop_index("ix_usage_events_uncounted", table_name="usage_events")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("counted")
