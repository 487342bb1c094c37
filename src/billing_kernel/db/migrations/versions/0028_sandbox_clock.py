"""The sandbox clock: in dev mode the kernel's time may be moved forward (`billing-kernel
clock advance 1 month`), so that a newcomer sees their own org's month close. One row at
most: the offset from real time. Outside dev mode it is never read.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sandbox_clock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("offset_microseconds", sa.BigInteger(), nullable=False),
        sa.Column("moved_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_sandbox_clock_one_row")),
        sa.CheckConstraint("offset_microseconds >= 0", name=op.f("ck_sandbox_clock_forward")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_clock")),
    )


def downgrade() -> None:
    op.drop_table("sandbox_clock")
