"""Credit notes: a paid invoice corrected by giving money back, by line or in full, each
note numbered (CN-000001), refunded through Stripe from the payment that paid the invoice;
and each invoice's credited amount (0 for every existing one).

Revision ID: 0032
Revises: 0031
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(
            sa.Column("credited", Money(14, 2), server_default=sa.text("0"), nullable=False)
        )
    op.create_table(
        "credit_notes",
        sa.Column("credit_note_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("amount", Money(14, 2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'refunded', 'failed')", name=op.f("ck_credit_notes_status")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_notes_amount")),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.invoice_id"],
            name=op.f("fk_credit_notes_invoice_id_invoices"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.org_id"], name=op.f("fk_credit_notes_org_id_orgs")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.payment_id"],
            name=op.f("fk_credit_notes_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("credit_note_id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_credit_notes_number")),
        sa.UniqueConstraint("sequence", name=op.f("uq_credit_notes_sequence")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_credit_notes_stripe_refund_id")),
    )
    with op.batch_alter_table("credit_notes") as batch:
        batch.create_index(batch.f("ix_credit_notes_invoice_id"), ["invoice_id"], unique=False)
    op.execute("INSERT INTO invoice_numbers (counter, last_number) VALUES ('credit_notes', 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("GRANT SELECT ON credit_notes TO billing_user")
        op.execute("ALTER TABLE credit_notes ENABLE ROW LEVEL SECURITY")
        op.execute(
            "CREATE POLICY credit_notes_member_orgs ON credit_notes "
            "USING (org_id IN (SELECT billing_user_org_ids()))"
        )


def downgrade() -> None:
    op.execute("DELETE FROM invoice_numbers WHERE counter = 'credit_notes'")
    with op.batch_alter_table("credit_notes") as batch:
        batch.drop_index(batch.f("ix_credit_notes_invoice_id"))
    op.drop_table("credit_notes")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("credited")
