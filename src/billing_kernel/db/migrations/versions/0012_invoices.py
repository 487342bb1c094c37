"""Invoices: each org's finalized invoice per period, its lines, the usage it billed, the
deployment's gap-free invoice numbers, and on each usage event the invoice that billed it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "invoice_numbers",
        sa.Column("counter", sa.String(length=16), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("counter", name=op.f("pk_invoice_numbers")),
    )
    op.execute("INSERT INTO invoice_numbers (counter, last_number) VALUES ('invoices', 0)")
    op.create_table(
        "invoices",
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", Money(precision=14, scale=2), nullable=False),
        sa.Column("total", Money(precision=14, scale=2), nullable=False),
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("bills_usage", sa.Boolean(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("issued_at", UTCDateTime(), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("replaces", sa.String(length=32), nullable=True),
        sa.CheckConstraint("status IN ('open', 'paid', 'void')", name=op.f("ck_invoices_status")),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.org_id"], name=op.f("fk_invoices_org_id_orgs")),
        sa.ForeignKeyConstraint(
            ["plan_slug", "plan_version"],
            ["plan_versions.plan_slug", "plan_versions.version"],
            name=op.f("fk_invoices_plan_slug_plan_version_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("invoice_id", name=op.f("pk_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("sequence", name=op.f("uq_invoices_sequence")),
    )
    op.create_index(
        "ix_invoices_live_period",
        "invoices",
        ["org_id", "period_start"],
        unique=True,
        postgresql_where=sa.text("status <> 'void'"),
        sqlite_where=sa.text("status <> 'void'"),
    )
    op.create_index(op.f("ix_invoices_org_id_issued_at"), "invoices", ["org_id", "issued_at"])
    op.create_table(
        "invoice_lines",
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("amount", Money(precision=14, scale=2), nullable=False),
        sa.Column("formula", sa.Text(), nullable=False),
        sa.Column("plan_slug", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.Integer(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=True),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price", Money(precision=18, scale=6), nullable=False),
        sa.Column("unit_size", sa.BigInteger(), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.invoice_id"],
            name=op.f("fk_invoice_lines_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("invoice_id", "number", name=op.f("pk_invoice_lines")),
    )
    op.create_table(
        "invoice_usage",
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("included", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.invoice_id"],
            name=op.f("fk_invoice_usage_invoice_id_invoices"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "invoice_id", "period_start", "metric", name=op.f("pk_invoice_usage")
        ),
    )
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("invoice_id", sa.String(length=32), nullable=True))
    op.create_index(
        "ix_usage_events_unbilled",
        "usage_events",
        ["org_id", "period_start"],
        postgresql_where=sa.text("invoice_id IS NULL"),
        sqlite_where=sa.text("invoice_id IS NULL"),
    )
    op.create_index(op.f("ix_usage_events_invoice_id"), "usage_events", ["invoice_id"])
    if postgres:
        op.execute("GRANT SELECT ON invoices, invoice_lines, invoice_usage TO billing_user")
        op.execute("ALTER TABLE invoices ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY invoices_member_orgs ON invoices "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )
        for table in ("invoice_lines", "invoice_usage"):  # those of the invoices above
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {table}_member_orgs ON {table} "
                "USING (invoice_id IN (SELECT invoice_id FROM invoices))"
            )


def downgrade() -> None:
    op.drop_index(op.f("ix_usage_events_invoice_id"), table_name="usage_events")
    op.drop_index("ix_usage_events_unbilled", table_name="usage_events")
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("invoice_id")
    for table in ("invoice_usage", "invoice_lines", "invoices", "invoice_numbers"):
        op.drop_table(table)
