"""API keys, webhook endpoints and org aliases as the deployment's reference tables, for
distributing the rest by org on Citus (docs/scaling.md): each is read on every request (a
key), every event (its endpoints) or every protocol call (an alias) for whichever org, holds
what is unique across the deployment (an alias names one org) or the deployment's own rows
(a key or an endpoint for every org), and is small. A reference table may have no foreign
key to an org's, so the endpoints' and aliases' keys to `orgs` go; the kernel writes an
endpoint or an alias only for an org that exists (it checks in the same transaction), and
never deletes an org.

Revision ID: 0044
Revises: 0043
"""

from __future__ import annotations

from alembic import op

revision = "0044"
down_revision = "0043"
branch_labels = None
depends_on = None

TABLES = ("webhook_endpoints", "org_aliases")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            batch.drop_constraint(f"fk_{table}_org_id_orgs", type_="foreignkey")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            batch.create_foreign_key(
                f"fk_{table}_org_id_orgs", "orgs", ["org_id"], ["org_id"], ondelete="CASCADE"
            )
