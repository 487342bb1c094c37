"""Payments: each org's Stripe customer, each attempt to collect an invoice, each Stripe
webhook event applied, and which payment paid an invoice (NULL for every existing one: they
were marked paid by hand).

Revision ID: 0030
Revises: 0029
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import Money, UTCDateTime

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paid_by", sa.String(length=32), nullable=True))
    op.create_table(
        "payment_customers",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
        sa.Column("claimed_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=True),
        sa.Column("card_payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("card_brand", sa.String(length=32), nullable=True),
        sa.Column("card_last4", sa.String(length=4), nullable=True),
        sa.Column("card_exp_month", sa.Integer(), nullable=True),
        sa.Column("card_exp_year", sa.Integer(), nullable=True),
        sa.Column("card_set_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.org_id"], name=op.f("fk_payment_customers_org_id_orgs")
        ),
        sa.PrimaryKeyConstraint("org_id", name=op.f("pk_payment_customers")),
        sa.UniqueConstraint(
            "stripe_customer_id", name=op.f("uq_payment_customers_stripe_customer_id")
        ),
    )
    op.create_table(
        "payments",
        sa.Column("payment_id", sa.String(length=32), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("amount", Money(14, 2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("stripe_payment_intent_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=64), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'succeeded', 'failed')",
            name=op.f("ck_payments_status"),
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_payments_attempt")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_payments_amount")),
        sa.ForeignKeyConstraint(
            ["invoice_id"], ["invoices.invoice_id"], name=op.f("fk_payments_invoice_id_invoices")
        ),
        sa.ForeignKeyConstraint(["org_id"], ["orgs.org_id"], name=op.f("fk_payments_org_id_orgs")),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payments")),
        sa.UniqueConstraint("invoice_id", "attempt", name=op.f("uq_payments_invoice_id_attempt")),
        sa.UniqueConstraint(
            "stripe_payment_intent_id", name=op.f("uq_payments_stripe_payment_intent_id")
        ),
    )
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_payments_org_id_created_at"), ["org_id", "created_at"], unique=False
        )
    op.create_table(
        "stripe_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("payment_id", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_stripe_events")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for table in ("payment_customers", "payments"):
            op.execute(f"GRANT SELECT ON {table} TO billing_user")
            op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
            op.execute(
                f"CREATE POLICY {table}_member_orgs ON {table} "
                "USING (org_id IN (SELECT billing_user_org_ids()))"
            )


def downgrade() -> None:
    op.drop_table("stripe_events")
    with op.batch_alter_table("payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payments_org_id_created_at"))
    op.drop_table("payments")
    op.drop_table("payment_customers")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_column("paid_by")
