"""When the kernel last asked Stripe for an org's card (an org with none on file, whose
invoice waits): asked at most every few hours, not at every round.

Revision ID: 0033
Revises: 0032
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payment_customers") as batch:
        batch.add_column(sa.Column("card_checked_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_customers") as batch:
        batch.drop_column("card_checked_at")
