"""The outbox keyed by org, the last step toward distributing every org's table by `org_id`
on Citus (docs/scaling.md):

- `billing_events` names the org an event is about on every event, the operators' too (a
  close that failed, a refund due: until now without an org, which is read from the event's
  own `data.org_id`), and keys on (org_id, seq), an event's id unique within its org. `seq`
  stays a sequence's on PostgreSQL (the log's order across orgs, indexed alone); on SQLite,
  where only a lone integer key numbers itself, the kernel's insert gives it.
- `deliveries` key on (org_id, delivery_id), name their event by (org_id, event_id) and are
  unique per (org_id, event_id, channel, target); a lookup by id alone keeps an index.
- `delivery_attempts` carry their delivery's `org_id`, in their key and foreign key.

The operators' events stay the operators': row-level security hides them from an org's
people (the policy below), and the kernel delivers them to deployment-wide endpoints only.

On PostgreSQL this runs in one transaction that holds the three tables for as long as it
takes to fill in `org_id` and rebuild their keys, during which writes that make an event (a
crossing, a block, a close, a payment) and the delivery worker wait; usage and checks that
make none do not. The outbox is bounded by BILLING_DELIVERY_RETENTION_DAYS; docs/operations.md
gives the time measured. A kernel of the earlier version cannot write events once this has
run (its insert names keys the tables no longer have), nor this version before it.

Revision ID: 0048
Revises: 0047
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0048"
down_revision = "0047"
branch_labels = None
depends_on = None

FOR_OPERATORS = "('invoice.close_failed', 'payment.refund_due')"
"""The operators' event types as this revision knows them (events/rules.py: FOR_OPERATORS)."""

MEMBER_ORGS = "org_id IN (SELECT billing_user_org_ids())"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    of_payload = (
        "json_extract(payload, '$.data.org_id')"
        if sqlite
        else "(payload::json -> 'data' ->> 'org_id')"
    )
    op.execute(f"UPDATE billing_events SET org_id = {of_payload} WHERE org_id IS NULL")
    op.execute(
        "UPDATE deliveries SET org_id = (SELECT org_id FROM billing_events e "
        "WHERE e.event_id = deliveries.event_id) WHERE org_id IS NULL"
    )
    op.add_column("delivery_attempts", sa.Column("org_id", sa.String(length=64), nullable=True))
    op.execute(
        "UPDATE delivery_attempts SET org_id = (SELECT org_id FROM deliveries d "
        "WHERE d.delivery_id = delivery_attempts.delivery_id)"
    )
    if sqlite:
        _sqlite(upgrade=True)
        return
    op.drop_constraint(
        "fk_delivery_attempts_delivery_id_deliveries", "delivery_attempts", type_="foreignkey"
    )
    op.drop_constraint("fk_deliveries_event_id_billing_events", "deliveries", type_="foreignkey")
    op.alter_column("billing_events", "org_id", nullable=False)
    op.drop_constraint("pk_billing_events", "billing_events", type_="primary")
    op.create_primary_key("pk_billing_events", "billing_events", ["org_id", "seq"])
    op.drop_constraint("uq_billing_events_event_id", "billing_events", type_="unique")
    op.create_unique_constraint(
        "uq_billing_events_org_id_event_id", "billing_events", ["org_id", "event_id"]
    )
    op.drop_index("ix_billing_events_org_id_seq", table_name="billing_events")
    op.create_index("ix_billing_events_seq", "billing_events", ["seq"])

    op.alter_column("deliveries", "org_id", nullable=False)
    op.drop_constraint("pk_deliveries", "deliveries", type_="primary")
    op.create_primary_key("pk_deliveries", "deliveries", ["org_id", "delivery_id"])
    op.create_index("ix_deliveries_delivery_id", "deliveries", ["delivery_id"])
    op.drop_constraint("uq_deliveries_event_id_channel_target", "deliveries", type_="unique")
    op.create_unique_constraint(
        "uq_deliveries_org_id_event_id_channel_target",
        "deliveries",
        ["org_id", "event_id", "channel", "target"],
    )
    op.create_foreign_key(
        "fk_deliveries_org_id_event_id_billing_events",
        "deliveries",
        "billing_events",
        ["org_id", "event_id"],
        ["org_id", "event_id"],
        ondelete="CASCADE",
    )
    op.alter_column("delivery_attempts", "org_id", nullable=False)
    op.drop_constraint("pk_delivery_attempts", "delivery_attempts", type_="primary")
    op.create_primary_key(
        "pk_delivery_attempts", "delivery_attempts", ["org_id", "delivery_id", "attempt"]
    )
    op.create_foreign_key(
        "fk_delivery_attempts_org_id_delivery_id_deliveries",
        "delivery_attempts",
        "deliveries",
        ["org_id", "delivery_id"],
        ["org_id", "delivery_id"],
        ondelete="CASCADE",
    )
    # An org's people read its events, not the operators' about it; they still write their
    # org's (an alert a member's change of plan made).
    op.execute("DROP POLICY billing_events_member_orgs ON billing_events")
    op.execute(
        "CREATE POLICY billing_events_member_orgs ON billing_events "
        f"USING ({MEMBER_ORGS} AND event_type NOT IN {FOR_OPERATORS}) "
        f"WITH CHECK ({MEMBER_ORGS})"
    )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite(upgrade=False)
    else:
        op.execute("DROP POLICY billing_events_member_orgs ON billing_events")
        op.execute(
            f"CREATE POLICY billing_events_member_orgs ON billing_events USING ({MEMBER_ORGS})"
        )
        op.drop_constraint(
            "fk_delivery_attempts_org_id_delivery_id_deliveries",
            "delivery_attempts",
            type_="foreignkey",
        )
        op.drop_constraint("pk_delivery_attempts", "delivery_attempts", type_="primary")
        op.create_primary_key(
            "pk_delivery_attempts", "delivery_attempts", ["delivery_id", "attempt"]
        )
        op.drop_constraint(
            "fk_deliveries_org_id_event_id_billing_events", "deliveries", type_="foreignkey"
        )
        op.drop_constraint(
            "uq_deliveries_org_id_event_id_channel_target", "deliveries", type_="unique"
        )
        op.create_unique_constraint(
            "uq_deliveries_event_id_channel_target", "deliveries", ["event_id", "channel", "target"]
        )
        op.drop_index("ix_deliveries_delivery_id", table_name="deliveries")
        op.drop_constraint("pk_deliveries", "deliveries", type_="primary")
        op.create_primary_key("pk_deliveries", "deliveries", ["delivery_id"])
        op.alter_column("deliveries", "org_id", nullable=True)
        op.drop_index("ix_billing_events_seq", table_name="billing_events")
        op.create_index("ix_billing_events_org_id_seq", "billing_events", ["org_id", "seq"])
        op.drop_constraint("uq_billing_events_org_id_event_id", "billing_events", type_="unique")
        op.create_unique_constraint("uq_billing_events_event_id", "billing_events", ["event_id"])
        op.drop_constraint("pk_billing_events", "billing_events", type_="primary")
        op.create_primary_key("pk_billing_events", "billing_events", ["seq"])
        op.alter_column("billing_events", "org_id", nullable=True)
        op.create_foreign_key(
            "fk_deliveries_event_id_billing_events",
            "deliveries",
            "billing_events",
            ["event_id"],
            ["event_id"],
            ondelete="CASCADE",
        )
        op.create_foreign_key(
            "fk_delivery_attempts_delivery_id_deliveries",
            "delivery_attempts",
            "deliveries",
            ["delivery_id"],
            ["delivery_id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("delivery_attempts") as batch:
        batch.drop_column("org_id")
    # The operators' events are theirs again by having no org.
    theirs = f"SELECT event_id FROM billing_events WHERE event_type IN {FOR_OPERATORS}"
    op.execute(f"UPDATE deliveries SET org_id = NULL WHERE event_id IN ({theirs})")
    op.execute(f"UPDATE billing_events SET org_id = NULL WHERE event_type IN {FOR_OPERATORS}")


def _sqlite(*, upgrade: bool) -> None:
    """SQLite alters a key by copying the table (Alembic's batch mode), events first."""
    with op.batch_alter_table("billing_events", recreate="always") as batch:
        batch.drop_constraint("pk_billing_events", type_="primary")
        if upgrade:
            batch.alter_column("org_id", existing_type=sa.String(64), nullable=False)
            batch.create_primary_key("pk_billing_events", ["org_id", "seq"])
            batch.drop_constraint("uq_billing_events_event_id", type_="unique")
            batch.create_unique_constraint(
                "uq_billing_events_org_id_event_id", ["org_id", "event_id"]
            )
            batch.drop_index("ix_billing_events_org_id_seq")
            batch.create_index("ix_billing_events_seq", ["seq"])
        else:
            batch.alter_column("org_id", existing_type=sa.String(64), nullable=True)
            batch.create_primary_key("pk_billing_events", ["seq"])
            batch.drop_constraint("uq_billing_events_org_id_event_id", type_="unique")
            batch.create_unique_constraint("uq_billing_events_event_id", ["event_id"])
            batch.drop_index("ix_billing_events_seq")
            batch.create_index("ix_billing_events_org_id_seq", ["org_id", "seq"])
    with op.batch_alter_table("deliveries", recreate="always") as batch:
        batch.drop_constraint("pk_deliveries", type_="primary")
        if upgrade:
            batch.alter_column("org_id", existing_type=sa.String(64), nullable=False)
            batch.create_primary_key("pk_deliveries", ["org_id", "delivery_id"])
            batch.create_index("ix_deliveries_delivery_id", ["delivery_id"])
            batch.drop_constraint("uq_deliveries_event_id_channel_target", type_="unique")
            batch.create_unique_constraint(
                "uq_deliveries_org_id_event_id_channel_target",
                ["org_id", "event_id", "channel", "target"],
            )
            batch.drop_constraint("fk_deliveries_event_id_billing_events", type_="foreignkey")
            batch.create_foreign_key(
                "fk_deliveries_org_id_event_id_billing_events",
                "billing_events",
                ["org_id", "event_id"],
                ["org_id", "event_id"],
                ondelete="CASCADE",
            )
        else:
            batch.alter_column("org_id", existing_type=sa.String(64), nullable=True)
            batch.create_primary_key("pk_deliveries", ["delivery_id"])
            batch.drop_index("ix_deliveries_delivery_id")
            batch.drop_constraint("uq_deliveries_org_id_event_id_channel_target", type_="unique")
            batch.create_unique_constraint(
                "uq_deliveries_event_id_channel_target", ["event_id", "channel", "target"]
            )
            batch.drop_constraint(
                "fk_deliveries_org_id_event_id_billing_events", type_="foreignkey"
            )
            batch.create_foreign_key(
                "fk_deliveries_event_id_billing_events",
                "billing_events",
                ["event_id"],
                ["event_id"],
                ondelete="CASCADE",
            )
    with op.batch_alter_table("delivery_attempts", recreate="always") as batch:
        batch.drop_constraint("pk_delivery_attempts", type_="primary")
        if upgrade:
            batch.alter_column("org_id", existing_type=sa.String(64), nullable=False)
            batch.create_primary_key("pk_delivery_attempts", ["org_id", "delivery_id", "attempt"])
            batch.drop_constraint("fk_delivery_attempts_delivery_id_deliveries", type_="foreignkey")
            batch.create_foreign_key(
                "fk_delivery_attempts_org_id_delivery_id_deliveries",
                "deliveries",
                ["org_id", "delivery_id"],
                ["org_id", "delivery_id"],
                ondelete="CASCADE",
            )
        else:
            batch.create_primary_key("pk_delivery_attempts", ["delivery_id", "attempt"])
            batch.drop_constraint(
                "fk_delivery_attempts_org_id_delivery_id_deliveries", type_="foreignkey"
            )
            batch.create_foreign_key(
                "fk_delivery_attempts_delivery_id_deliveries",
                "deliveries",
                ["delivery_id"],
                ["delivery_id"],
                ondelete="CASCADE",
            )
