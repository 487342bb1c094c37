"""Which event types an org's owners and admins get by email: NULL (every existing org) is
the default, threshold crossings and blocks; "back under" notices are emailed only to an
org that asks for them.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("org_notification_settings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_events", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("org_notification_settings", schema=None) as batch_op:
        batch_op.drop_column("email_events")
