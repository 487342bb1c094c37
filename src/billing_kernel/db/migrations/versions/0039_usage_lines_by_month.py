"""Usage lines by month: on PostgreSQL `usage_lines` becomes a table partitioned by
`period_start`, a partition a month, so that a month's lines are one table to keep, read
or drop; its key gains `period_start` (a line's month is its event's, and an event is
stored once under its key, so the key stays one line per event and metric).

The table as it stood becomes the first partition, holding every month before the next
one, without copying a row and without holding writes for more than a moment: its new key's
index is built CONCURRENTLY and its bound is proven by a CHECK constraint validated while
writes go on, and only then, under a lock that holds writes for the catalogue changes alone
(about a tenth of a second, whatever the table holds), is the table renamed, the
partitioned table made in its place, and the old one attached to it. The next month's
partition and a DEFAULT one follow; the worker makes each month's ahead of it.

SQLite has no partitions: its key gains `period_start` too, so that both databases keep the
same rule.

Revision ID: 0039
Revises: 0038
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from alembic import op

revision = "0039"
down_revision = "0038"
branch_labels = None
depends_on = None

_INDEXES = {
    # the parent's index: (the old table's index, renamed to free its name), columns, where
    "ix_usage_lines_invoice_id": ("invoice_id", "(invoice_id)", ""),
    "ix_usage_lines_org_id_occurred_at_idempotency_key": (
        "read_back",
        "(org_id, occurred_at, idempotency_key)",
        "",
    ),
    "ix_usage_lines_org_id_period_start_metric": ("counted", "(org_id, period_start, metric)", ""),
    "ix_usage_lines_unbilled": ("unbilled", "(org_id, period_start)", " WHERE invoice_id IS NULL"),
}


def _next_month(today: date) -> date:
    return date(today.year + 1, 1, 1) if today.month == 12 else date(today.year, today.month + 1, 1)


def partition_name(month: date) -> str:
    return f"usage_lines_{month:%Y_%m}"


def _create_table(key: str, partitioning: str) -> None:
    """`usage_lines` with `key` as its primary key, its indexes and row-level security."""
    op.execute(f"""
        CREATE TABLE usage_lines (
            org_id varchar(64) NOT NULL,
            idempotency_key varchar(255) NOT NULL,
            metric varchar(64) NOT NULL,
            quantity bigint NOT NULL,
            occurred_at timestamptz NOT NULL,
            period_start date NOT NULL,
            invoice_id varchar(32),
            CONSTRAINT pk_usage_lines PRIMARY KEY ({key}),
            CONSTRAINT ck_usage_lines_quantity CHECK (quantity >= 0),
            CONSTRAINT fk_usage_lines_metric_metrics FOREIGN KEY (metric) REFERENCES metrics (key),
            CONSTRAINT fk_usage_lines_org_id_orgs
                FOREIGN KEY (org_id) REFERENCES orgs (org_id) ON DELETE CASCADE
        ){partitioning}
    """)
    for name, (_, columns, where) in _INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON usage_lines {columns}{where}")
    op.execute("ALTER TABLE usage_lines ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY usage_lines_member_orgs ON usage_lines "
        "USING (org_id IN (SELECT billing_user_org_ids()))"
    )
    op.execute("GRANT SELECT ON usage_lines TO billing_user")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("usage_lines") as batch:
            batch.drop_constraint("pk_usage_lines", type_="primary")
            batch.create_primary_key(
                "pk_usage_lines", ["org_id", "idempotency_key", "metric", "period_start"]
            )
        return
    cut = _next_month(datetime.now(UTC).date())
    first = f"usage_lines_before_{cut:%Y_%m}"
    with op.get_context().autocommit_block():  # writes go on while these run
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS usage_lines_month_key "
            "ON usage_lines (org_id, idempotency_key, metric, period_start)"
        )
        op.execute(
            f"ALTER TABLE usage_lines ADD CONSTRAINT usage_lines_before "
            f"CHECK (period_start < DATE '{cut.isoformat()}') NOT VALID"
        )
        op.execute("ALTER TABLE usage_lines VALIDATE CONSTRAINT usage_lines_before")
    # The moment: catalogue changes only.
    op.execute("LOCK TABLE usage_lines IN ACCESS EXCLUSIVE MODE")
    op.execute(f"ALTER TABLE usage_lines RENAME TO {first}")
    op.execute(
        f"ALTER TABLE {first} DROP CONSTRAINT pk_usage_lines, "
        f"ADD CONSTRAINT {first}_pkey PRIMARY KEY USING INDEX usage_lines_month_key"
    )
    for name, (suffix, _, _) in _INDEXES.items():
        op.execute(f"ALTER INDEX {name} RENAME TO {first}_{suffix}")
    _create_table(
        "org_id, idempotency_key, metric, period_start", " PARTITION BY RANGE (period_start)"
    )
    op.execute(
        f"ALTER TABLE usage_lines ATTACH PARTITION {first} "
        f"FOR VALUES FROM (MINVALUE) TO ('{cut.isoformat()}')"
    )
    op.execute(
        f"CREATE TABLE {partition_name(cut)} PARTITION OF usage_lines "
        f"FOR VALUES FROM ('{cut.isoformat()}') TO ('{_next_month(cut).isoformat()}')"
    )
    op.execute("CREATE TABLE usage_lines_default PARTITION OF usage_lines DEFAULT")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("usage_lines") as batch:
            batch.drop_constraint("pk_usage_lines", type_="primary")
            batch.create_primary_key("pk_usage_lines", ["org_id", "idempotency_key", "metric"])
        return
    # Back to one table: every partition's rows copied into it (this one blocks writes).
    op.execute("ALTER TABLE usage_lines RENAME TO usage_lines_by_month")
    for name in _INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_by_month")
    op.execute("ALTER TABLE usage_lines_by_month RENAME CONSTRAINT pk_usage_lines TO pk_by_month")
    _create_table("org_id, idempotency_key, metric", "")
    op.execute("INSERT INTO usage_lines SELECT * FROM usage_lines_by_month")
    op.execute("DROP TABLE usage_lines_by_month")
