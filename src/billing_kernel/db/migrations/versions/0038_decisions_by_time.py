"""Quota decisions by the time they were made, so that those past
BILLING_DECISION_RETENTION_DAYS are found, oldest first, without reading the table.

Revision ID: 0038
Revises: 0037
"""

from __future__ import annotations

from alembic import op

revision = "0038"
down_revision = "0037"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_quota_decisions_decided_at"), "quota_decisions", ["decided_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_quota_decisions_decided_at"), table_name="quota_decisions")
