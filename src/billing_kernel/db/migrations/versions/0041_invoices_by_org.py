"""Invoices keyed by org, a step toward distributing every org's table by `org_id` on Citus
(docs/scaling.md): `invoices` keys on (org_id, invoice_id) and holds its number and sequence
unique within the org (the deployment's counter keeps them unique and gapless across orgs,
and `invoices verify` checks it); `invoice_lines` and `invoice_usage` carry their invoice's
`org_id`, in their keys; every foreign key to an invoice (lines, usage, payments, credit
notes, credit burns) names it by (org_id, invoice_id). Lookups by id, number and sequence
alone keep an index each.

On PostgreSQL this runs in one transaction that holds the invoice tables for as long as it
takes to fill in `org_id` and rebuild their keys: invoices are an org's per month, so a
deployment of 100,000 orgs billed for two years has 2.4 million, a few seconds' work, during
which closes, payments and invoice reads wait (usage and checks do not).

Revision ID: 0041
Revises: 0040
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0041"
down_revision = "0040"
branch_labels = None
depends_on = None

CHILDREN = ("invoice_lines", "invoice_usage")
"""Tables of the invoice's own, which gain its org_id."""

KEYS = {"invoice_lines": ("number",), "invoice_usage": ("period_start", "metric")}
"""Each child's key, after the invoice."""

REFERRERS = {
    "invoice_lines": "CASCADE",
    "invoice_usage": "CASCADE",
    "payments": None,
    "credit_notes": None,
    "credit_burns": None,
}
"""Every table with a foreign key to an invoice, and what a deleted invoice does to it."""


def upgrade() -> None:
    for child in CHILDREN:
        op.add_column(child, sa.Column("org_id", sa.String(length=64), nullable=True))
        op.execute(
            f"UPDATE {child} SET org_id = "
            f"(SELECT org_id FROM invoices WHERE invoices.invoice_id = {child}.invoice_id)"
        )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite(upgrade=True)
        return
    for table in REFERRERS:
        op.drop_constraint(f"fk_{table}_invoice_id_invoices", table, type_="foreignkey")
    op.drop_constraint("pk_invoices", "invoices", type_="primary")
    op.create_primary_key("pk_invoices", "invoices", ["org_id", "invoice_id"])
    for column in ("number", "sequence"):
        op.drop_constraint(f"uq_invoices_{column}", "invoices", type_="unique")
        op.create_unique_constraint(f"uq_invoices_org_id_{column}", "invoices", ["org_id", column])
        op.create_index(f"ix_invoices_{column}", "invoices", [column])
    op.create_index("ix_invoices_invoice_id", "invoices", ["invoice_id"])
    for child in CHILDREN:
        op.alter_column(child, "org_id", nullable=False)
        op.drop_constraint(f"pk_{child}", child, type_="primary")
        op.create_primary_key(f"pk_{child}", child, ["org_id", "invoice_id", *KEYS[child]])
    for table, on_delete in REFERRERS.items():
        op.create_foreign_key(
            f"fk_{table}_org_id_invoice_id_invoices",
            table,
            "invoices",
            ["org_id", "invoice_id"],
            ["org_id", "invoice_id"],
            ondelete=on_delete,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _sqlite(upgrade=False)
    else:
        for table in REFERRERS:
            op.drop_constraint(f"fk_{table}_org_id_invoice_id_invoices", table, type_="foreignkey")
        for child in CHILDREN:
            op.drop_constraint(f"pk_{child}", child, type_="primary")
            op.create_primary_key(f"pk_{child}", child, ["invoice_id", *KEYS[child]])
        for index in ("invoice_id", "number", "sequence"):
            op.drop_index(f"ix_invoices_{index}", table_name="invoices")
        for column in ("number", "sequence"):
            op.drop_constraint(f"uq_invoices_org_id_{column}", "invoices", type_="unique")
            op.create_unique_constraint(f"uq_invoices_{column}", "invoices", [column])
        op.drop_constraint("pk_invoices", "invoices", type_="primary")
        op.create_primary_key("pk_invoices", "invoices", ["invoice_id"])
        for table, on_delete in REFERRERS.items():
            op.create_foreign_key(
                f"fk_{table}_invoice_id_invoices",
                table,
                "invoices",
                ["invoice_id"],
                ["invoice_id"],
                ondelete=on_delete,
            )
    for child in CHILDREN:
        with op.batch_alter_table(child) as batch:
            batch.drop_column("org_id")


def _sqlite(*, upgrade: bool) -> None:
    """SQLite alters a key by copying the table (Alembic's batch mode), invoices first."""
    with op.batch_alter_table("invoices", recreate="always") as batch:
        batch.drop_constraint("pk_invoices", type_="primary")
        if upgrade:
            batch.create_primary_key("pk_invoices", ["org_id", "invoice_id"])
        else:
            batch.create_primary_key("pk_invoices", ["invoice_id"])
        for column in ("number", "sequence"):
            if upgrade:
                batch.drop_constraint(f"uq_invoices_{column}", type_="unique")
                batch.create_unique_constraint(f"uq_invoices_org_id_{column}", ["org_id", column])
                batch.create_index(f"ix_invoices_{column}", [column])
            else:
                batch.drop_index(f"ix_invoices_{column}")
                batch.drop_constraint(f"uq_invoices_org_id_{column}", type_="unique")
                batch.create_unique_constraint(f"uq_invoices_{column}", [column])
        if upgrade:
            batch.create_index("ix_invoices_invoice_id", ["invoice_id"])
        else:
            batch.drop_index("ix_invoices_invoice_id")
    for table, on_delete in REFERRERS.items():
        with op.batch_alter_table(table, recreate="always") as batch:
            if upgrade:
                batch.drop_constraint(f"fk_{table}_invoice_id_invoices", type_="foreignkey")
                batch.create_foreign_key(
                    f"fk_{table}_org_id_invoice_id_invoices",
                    "invoices",
                    ["org_id", "invoice_id"],
                    ["org_id", "invoice_id"],
                    ondelete=on_delete,
                )
            else:
                batch.drop_constraint(f"fk_{table}_org_id_invoice_id_invoices", type_="foreignkey")
                batch.create_foreign_key(
                    f"fk_{table}_invoice_id_invoices",
                    "invoices",
                    ["invoice_id"],
                    ["invoice_id"],
                    ondelete=on_delete,
                )
            if table in CHILDREN:
                batch.drop_constraint(f"pk_{table}", type_="primary")
                if upgrade:
                    batch.alter_column("org_id", existing_type=sa.String(64), nullable=False)
                    batch.create_primary_key(f"pk_{table}", ["org_id", "invoice_id", *KEYS[table]])
                else:
                    batch.create_primary_key(f"pk_{table}", ["invoice_id", *KEYS[table]])
