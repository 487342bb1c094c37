"""Usage events record whether their time was given by the sender or stamped by the kernel
(received without one, or written by a consume or a reservation's commit): a time the
kernel chose is not part of the payload a repeat is compared with.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Events stored before this revision: taken as timed by their sender, so a repeat is
    # compared with them exactly as before.
    op.add_column(
        "usage_events",
        sa.Column("time_given", sa.Boolean(), server_default=sa.true(), nullable=False),
    )


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("time_given")
