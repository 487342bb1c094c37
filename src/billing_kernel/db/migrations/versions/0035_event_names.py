"""Event names up to 255 characters (any text without control characters, as the
incumbents' protocols take them): `usage_events.event` widened from 128. On PostgreSQL a
wider varchar changes the catalogue only: the table is not rewritten.

Revision ID: 0035
Revises: 0034
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.alter_column(
            "event", existing_type=sa.String(length=128), type_=sa.String(length=255)
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.alter_column(
            "event", existing_type=sa.String(length=255), type_=sa.String(length=128)
        )
