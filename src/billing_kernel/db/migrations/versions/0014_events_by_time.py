"""Usage events by time: an org's events read back in the order they occurred, a page at a
time, from an index instead of a sort.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_usage_events_org_id_occurred_at_idempotency_key"),
        "usage_events",
        ["org_id", "occurred_at", "idempotency_key"],
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_usage_events_org_id_occurred_at_idempotency_key"), table_name="usage_events"
    )
