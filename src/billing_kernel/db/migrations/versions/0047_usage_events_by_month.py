"""Usage events by month: on PostgreSQL `usage_events` becomes a table partitioned by the
month of `occurred_at`, a partition a month, so that a month's events are one table to keep
or drop, as their lines are (0039). Its key gains `occurred_at`; whether an event is new is
decided by `usage_event_keys` (0046), whichever month a retry of it comes in.

Every kernel must run this version before it is taken (see 0046): an earlier kernel's insert
names a key the partitioned table no longer has, and it would write no event until rolled.

As in 0039, the table as it stood becomes the first partition, holding every month before
the next one, without copying a row: its new key's index is built CONCURRENTLY and its bound
proven by a CHECK constraint validated while writes go on, and only the catalogue changes
(the triggers 0046 added dropped, the table renamed, the partitioned table made in its place
and the old one attached) hold writes, for a moment whatever the table holds. That moment
holds `orgs` too, so every request waits for it.

SQLite has no partitions: its key gains `occurred_at` too, so that both databases keep the
same rule.

Revision ID: 0047
Revises: 0046
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import op

from billing_kernel.db.migrations.event_keys import (
    DROP_KEEP_KEYS,
    KEEP_KEYS_TRIGGER,
    keep_keys_function,
)

revision = "0047"
down_revision = "0046"
branch_labels = None
depends_on = None

_UNCOUNTED = "(org_id, occurred_at, idempotency_key) WHERE NOT counted"


def _next_month(today: date) -> date:
    return date(today.year + 1, 1, 1) if today.month == 12 else date(today.year, today.month + 1, 1)


def _bound(month: date) -> str:
    return f"'{month.isoformat()} 00:00:00+00'"


def _create_table(key: str, partitioning: str) -> None:
    """`usage_events` with `key` as its primary key, its index and row-level security."""
    op.execute(f"""
        CREATE TABLE usage_events (
            org_id varchar(64) NOT NULL,
            idempotency_key varchar(255) NOT NULL,
            event varchar(255) NOT NULL,
            quantity bigint,
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL,
            time_given boolean DEFAULT true NOT NULL,
            properties text,
            counted boolean DEFAULT true NOT NULL,
            CONSTRAINT pk_usage_events PRIMARY KEY ({key}),
            CONSTRAINT ck_usage_events_quantity CHECK (quantity >= 0),
            CONSTRAINT fk_usage_events_org_id_orgs
                FOREIGN KEY (org_id) REFERENCES orgs (org_id) ON DELETE CASCADE
        ){partitioning}
    """)
    op.execute(f"CREATE INDEX ix_usage_events_uncounted ON usage_events {_UNCOUNTED}")
    op.execute("ALTER TABLE usage_events ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY usage_events_member_orgs ON usage_events "
        "USING (org_id IN (SELECT billing_user_org_ids()))"
    )
    op.execute("GRANT SELECT ON usage_events TO billing_user")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("usage_events") as batch:
            batch.drop_constraint("pk_usage_events", type_="primary")
            batch.create_primary_key(
                "pk_usage_events", ["org_id", "idempotency_key", "occurred_at"]
            )
        return
    cut = _next_month(datetime.now(UTC).date())
    first = f"usage_events_before_{cut:%Y_%m}"
    with op.get_context().autocommit_block():  # writes go on while these run
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS usage_events_month_key "
            "ON usage_events (org_id, idempotency_key, occurred_at)"
        )
        op.execute(
            f"ALTER TABLE usage_events ADD CONSTRAINT usage_events_before "
            f"CHECK (occurred_at < TIMESTAMPTZ {_bound(cut)}) NOT VALID"
        )
        op.execute("ALTER TABLE usage_events VALIDATE CONSTRAINT usage_events_before")
    # The moment: catalogue changes only. Attaching the table merges its foreign key into
    # the partitioned table's, which drops its triggers on `orgs`: `orgs` is locked first,
    # as every writer of events reaches it first (its key's foreign key), so that the two
    # wait for each other in one order rather than deadlock.
    op.execute("LOCK TABLE orgs, usage_events IN ACCESS EXCLUSIVE MODE")
    for statement in DROP_KEEP_KEYS:
        op.execute(statement)
    op.execute(f"ALTER TABLE usage_events RENAME TO {first}")
    op.execute(
        f"ALTER TABLE {first} DROP CONSTRAINT pk_usage_events, "
        f"ADD CONSTRAINT {first}_pkey PRIMARY KEY USING INDEX usage_events_month_key"
    )
    op.execute(f"ALTER INDEX ix_usage_events_uncounted RENAME TO {first}_uncounted")
    _create_table("org_id, idempotency_key, occurred_at", " PARTITION BY RANGE (occurred_at)")
    op.execute(
        f"ALTER TABLE usage_events ATTACH PARTITION {first} "
        f"FOR VALUES FROM (MINVALUE) TO ({_bound(cut)})"
    )
    op.execute(
        f"CREATE TABLE usage_events_{cut:%Y_%m} PARTITION OF usage_events "
        f"FOR VALUES FROM ({_bound(cut)}) TO ({_bound(_next_month(cut))})"
    )
    op.execute("CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("usage_events") as batch:
            batch.drop_constraint("pk_usage_events", type_="primary")
            batch.create_primary_key("pk_usage_events", ["org_id", "idempotency_key"])
        return
    # Back to one table: every partition's rows copied into it (this one blocks writes), and
    # 0046's triggers back, for the kernels of the earlier version.
    op.execute("ALTER TABLE usage_events RENAME TO usage_events_by_month")
    op.execute("ALTER INDEX ix_usage_events_uncounted RENAME TO ix_usage_events_by_month")
    op.execute("ALTER TABLE usage_events_by_month RENAME CONSTRAINT pk_usage_events TO pk_by_month")
    _create_table("org_id, idempotency_key", "")
    op.execute("INSERT INTO usage_events SELECT * FROM usage_events_by_month")
    op.execute("DROP TABLE usage_events_by_month")
    op.execute(keep_keys_function(indexed=True))
    op.execute(KEEP_KEYS_TRIGGER)
