"""Payments, credit notes, credit grants and burns keyed by org, the next step toward
distributing every org's table by `org_id` on Citus (docs/scaling.md), after invoices
(0041): each keys on (org_id, its id); what was unique across the deployment (a Stripe
PaymentIntent, Checkout Session or refund id, a payment's invoice and attempt, a credit
note's number and sequence, a grant's source) is unique within the org, which holds the same
rows unique since each belongs to one org (Stripe's ids are Stripe's, numbers come from the
deployment's counter, a grant's source is the org's credit note); each is still found alone
through an index of its own; the keys from a credit note to its payment and from a burn to
its grant name them by org and id.

On PostgreSQL one transaction holds these tables while their keys are rebuilt: a few rows per
org and month, seconds for millions, during which collection and credit notes wait.

Revision ID: 0042
Revises: 0041
"""

from __future__ import annotations

from alembic import op

revision = "0042"
down_revision = "0041"
branch_labels = None
depends_on = None

TABLES: dict[str, tuple[list[str], list[list[str]], list[str]]] = {
    # table: (its key before, what it held unique, the columns found alone by an index)
    "payments": (
        ["payment_id"],
        [["invoice_id", "attempt"], ["stripe_payment_intent_id"], ["checkout_session_id"]],
        ["payment_id", "stripe_payment_intent_id", "checkout_session_id"],
    ),
    "credit_grants": (["grant_id"], [["source_id"]], ["grant_id", "source_id"]),
    "credit_notes": (
        ["credit_note_id"],
        [["number"], ["sequence"], ["stripe_refund_id"]],
        ["credit_note_id", "number", "sequence", "stripe_refund_id"],
    ),
    "credit_burns": (["grant_id", "invoice_id"], [], []),
}
"""In the order they are rebuilt: each parent before what refers to it."""

KEYS = {"credit_notes": ("payment_id", "payments"), "credit_burns": ("grant_id", "credit_grants")}
"""The foreign keys to one of the tables above: (column, parent)."""


def _unique(table: str, columns: list[str]) -> str:
    return f"uq_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        for table, (column, parent) in KEYS.items():
            op.drop_constraint(f"fk_{table}_{column}_{parent}", table, type_="foreignkey")
    for table, (key, uniques, alone) in TABLES.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", ["org_id", *key])
            for columns in uniques:
                batch.drop_constraint(_unique(table, columns), type_="unique")
                batch.create_unique_constraint(
                    _unique(table, ["org_id", *columns]), ["org_id", *columns]
                )
            for column in alone:
                batch.create_index(f"ix_{table}_{column}", [column])
            if table in KEYS:
                column, parent = KEYS[table]
                if sqlite:
                    batch.drop_constraint(f"fk_{table}_{column}_{parent}", type_="foreignkey")
                batch.create_foreign_key(
                    f"fk_{table}_org_id_{column}_{parent}",
                    parent,
                    ["org_id", column],
                    ["org_id", TABLES[parent][0][0]],
                )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if not sqlite:
        for table, (column, parent) in KEYS.items():
            op.drop_constraint(f"fk_{table}_org_id_{column}_{parent}", table, type_="foreignkey")
    for table, (key, uniques, alone) in reversed(TABLES.items()):
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            if sqlite and table in KEYS:
                column, parent = KEYS[table]
                batch.drop_constraint(f"fk_{table}_org_id_{column}_{parent}", type_="foreignkey")
            for column in alone:
                batch.drop_index(f"ix_{table}_{column}")
            for columns in uniques:
                batch.drop_constraint(_unique(table, ["org_id", *columns]), type_="unique")
                batch.create_unique_constraint(_unique(table, columns), columns)
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(f"pk_{table}", key)
    for table, (column, parent) in KEYS.items():
        with op.batch_alter_table(table, recreate="always" if sqlite else "auto") as batch:
            batch.create_foreign_key(
                f"fk_{table}_{column}_{parent}", parent, [column], [TABLES[parent][0][0]]
            )
