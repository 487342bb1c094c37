"""Usage events by key only: since usage lines (0017) hold what each event counts toward,
every read of usage_events goes by its key (a line's event, a repeat's stored payload), and
the events are read back in time order through usage_lines' own index. The time index on
usage_events served no query, cost every insert an index entry, and could be taken by the
planner for a key lookup (scanning an org's events for one key).

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_INDEX = "ix_usage_events_org_id_occurred_at_idempotency_key"


def upgrade() -> None:
    op.drop_index(_INDEX, table_name="usage_events")


def downgrade() -> None:
    op.create_index(_INDEX, "usage_events", ["org_id", "occurred_at", "idempotency_key"])
