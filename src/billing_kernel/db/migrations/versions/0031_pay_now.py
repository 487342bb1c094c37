"""Pay now: an attempt may be a Stripe Checkout page in payment mode (its session, its URL,
when it stops taking payment), and `canceled`, a page left unpaid until it expired.

Revision ID: 0031
Revises: 0030
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(sa.Column("checkout_session_id", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("checkout_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("checkout_expires_at", UTCDateTime(), nullable=True))
        batch.create_unique_constraint(
            op.f("uq_payments_checkout_session_id"), ["checkout_session_id"]
        )
        batch.drop_constraint(op.f("ck_payments_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_payments_status"),
            "status IN ('pending', 'processing', 'succeeded', 'failed', 'canceled')",
        )


def downgrade() -> None:
    op.execute("DELETE FROM payments WHERE status = 'canceled'")
    with op.batch_alter_table("payments") as batch:
        batch.drop_constraint(op.f("ck_payments_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_payments_status"), "status IN ('pending', 'processing', 'succeeded', 'failed')"
        )
        batch.drop_constraint(op.f("uq_payments_checkout_session_id"), type_="unique")
        batch.drop_column("checkout_expires_at")
        batch.drop_column("checkout_url")
        batch.drop_column("checkout_session_id")
