"""Credit balances: money an org holds for its next invoices (a credit note on an invoice
paid outside Stripe), and what each invoice drew from it; a credit note may be `balance`,
without a payment to refund.

Revision ID: 0034
Revises: 0033
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credit_grants",
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", Money(14, 2), nullable=False),
        sa.Column("remaining", Money(14, 2), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_grants_amount")),
        sa.CheckConstraint("remaining >= 0", name=op.f("ck_credit_grants_remaining")),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.org_id"], name=op.f("fk_credit_grants_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("grant_id", name=op.f("pk_credit_grants")),
        sa.UniqueConstraint("source_id", name=op.f("uq_credit_grants_source_id")),
    )
    with op.batch_alter_table("credit_grants") as batch:
        batch.create_index(
            batch.f("ix_credit_grants_org_id_currency"), ["org_id", "currency"], unique=False
        )
    op.create_table(
        "credit_burns",
        sa.Column("grant_id", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("amount", Money(14, 2), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("released_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_burns_amount")),
        sa.ForeignKeyConstraint(
            ["grant_id"],
            ["credit_grants.grant_id"],
            name=op.f("fk_credit_burns_grant_id_credit_grants"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.invoice_id"],
            name=op.f("fk_credit_burns_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.org_id"], name=op.f("fk_credit_burns_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("grant_id", "invoice_id", name=op.f("pk_credit_burns")),
    )
    with op.batch_alter_table("credit_burns") as batch:
        batch.create_index(batch.f("ix_credit_burns_invoice_id"), ["invoice_id"], unique=False)
    with op.batch_alter_table("credit_notes") as batch:
        batch.alter_column("payment_id", existing_type=sa.String(length=32), nullable=True)
        batch.drop_constraint(op.f("ck_credit_notes_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_credit_notes_status"), "status IN ('pending', 'refunded', 'failed', 'balance')"
        )
    if op.get_bind().dialect.name == "postgresql":
        for table in ("credit_grants", "credit_burns"):
            op.execute(f"GRANT SELECT ON {table} TO billing_user")
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {table}_member_orgs ON {table} "
                "USING (org_id IN (SELECT billing_user_org_ids()))"
            )


def downgrade() -> None:
    op.execute("DELETE FROM credit_notes WHERE status = 'balance'")
    with op.batch_alter_table("credit_notes") as batch:
        batch.drop_constraint(op.f("ck_credit_notes_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_credit_notes_status"), "status IN ('pending', 'refunded', 'failed')"
        )
        batch.alter_column("payment_id", existing_type=sa.String(length=32), nullable=False)
    with op.batch_alter_table("credit_burns") as batch:
        batch.drop_index(batch.f("ix_credit_burns_invoice_id"))
    op.drop_table("credit_burns")
    with op.batch_alter_table("credit_grants") as batch:
        batch.drop_index(batch.f("ix_credit_grants_org_id_currency"))
    op.drop_table("credit_grants")
