"""API keys for services; signed-in users may seed and update their orgs' billing state.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # A user's first look at their org seeds its billing state, and an admin may change
        # the plan; the RLS policy (WITH CHECK = USING) keeps both to the user's own orgs.
        op.execute("GRANT INSERT, UPDATE ON org_billing_state TO billing_user")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("REVOKE INSERT, UPDATE ON org_billing_state FROM billing_user")
    op.drop_table("api_keys")
