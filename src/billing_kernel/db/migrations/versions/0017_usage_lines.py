"""Usage lines: an event may count toward several metrics, so what it counts toward moves to
a table of its own (one row per event and metric), and `usage_events` keeps the event as
received (its name, and a quantity when it reports one metric), which a repeat of its key
is compared with.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from alembic import op

from billing_kernel.db.types import UTCDateTime

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


_LEDGER_INDEXES = {
    "org_id_period_start_metric": ["org_id", "period_start", "metric"],
    "org_id_occurred_at_idempotency_key": ["org_id", "occurred_at", "idempotency_key"],
    "invoice_id": ["invoice_id"],
}
"""The indexes of the one-table ledger (0016), which usage_lines takes over, by name."""


def _set_aside(table: str, indexes: Iterable[str], unbilled: bool) -> str:
    """Rename `table` out of the way (its indexes and primary key dropped or renamed, their
    names being needed by the table that replaces it); returns its new name."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for columns in indexes:
        op.drop_index(f"ix_{table}_{columns}", table_name=table)
    if unbilled:
        op.drop_index(f"ix_{table}_unbilled", table_name=table)
    if postgres:
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT pk_{table} TO pk_{table}_old")
    op.rename_table(table, f"{table}_old")
    return f"{table}_old"


def _org_scoped(table: str) -> None:
    """Readable by billing_user for its own orgs only, as every org's table (0001)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"GRANT SELECT ON {table} TO billing_user")
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY {table}_member_orgs ON {table} "
        "USING (org_id IN (SELECT billing_user_org_ids()))"
    )


def _unbilled_index(table: str) -> None:
    op.create_index(
        f"ix_{table}_unbilled",
        table,
        ["org_id", "period_start"],
        postgresql_where=sa.text("invoice_id IS NULL"),
        sqlite_where=sa.text("invoice_id IS NULL"),
    )


def upgrade() -> None:
    old = _set_aside("usage_events", _LEDGER_INDEXES, unbilled=True)
    op.create_table(
        "usage_events",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("event", sa.String(length=128), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("time_given", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_events_quantity")),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_events_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", name=op.f("pk_usage_events")),
    )
    op.create_index(
        op.f("ix_usage_events_org_id_occurred_at_idempotency_key"),
        "usage_events",
        ["org_id", "occurred_at", "idempotency_key"],
    )
    op.create_table(
        "usage_lines",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=True),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_lines_quantity")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_lines_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["orgs.org_id"], name=op.f("fk_usage_lines_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", "metric", name=op.f("pk_usage_lines")),
    )
    for name, columns in _LEDGER_INDEXES.items():
        op.create_index(f"ix_usage_lines_{name}", "usage_lines", columns)
    _unbilled_index("usage_lines")
    op.execute(
        "INSERT INTO usage_events (org_id, idempotency_key, event, quantity, occurred_at, "
        f"received_at, time_given, properties) SELECT org_id, idempotency_key, metric, quantity, "
        f"occurred_at, received_at, time_given, properties FROM {old}"
    )
    op.execute(
        "INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at, "
        "period_start, invoice_id) SELECT org_id, idempotency_key, metric, quantity, "
        f"occurred_at, period_start, invoice_id FROM {old}"
    )
    op.drop_table(old)
    _org_scoped("usage_events")
    _org_scoped("usage_lines")


def downgrade() -> None:
    # Back to one metric per event: an event that counted toward several keeps its line of
    # the first metric key; one that counted toward none is dropped.
    new = _set_aside("usage_events", ("org_id_occurred_at_idempotency_key",), unbilled=False)
    op.create_table(
        "usage_events",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("time_given", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("invoice_id", sa.String(length=32), nullable=True),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.CheckConstraint("quantity >= 0", name=op.f("ck_usage_events_quantity")),
        sa.ForeignKeyConstraint(
            ["metric"], ["metrics.key"], name=op.f("fk_usage_events_metric_metrics")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["orgs.org_id"],
            name=op.f("fk_usage_events_org_id_orgs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("org_id", "idempotency_key", name=op.f("pk_usage_events")),
    )
    op.execute(
        "INSERT INTO usage_events (org_id, idempotency_key, metric, quantity, occurred_at, "
        "received_at, period_start, time_given, invoice_id, properties) "
        "SELECT e.org_id, e.idempotency_key, l.metric, l.quantity, e.occurred_at, "
        "e.received_at, l.period_start, e.time_given, l.invoice_id, e.properties "
        f"FROM {new} e JOIN usage_lines l ON l.org_id = e.org_id "
        "AND l.idempotency_key = e.idempotency_key WHERE l.metric = (SELECT min(f.metric) "
        "FROM usage_lines f WHERE f.org_id = e.org_id AND f.idempotency_key = e.idempotency_key)"
    )
    op.drop_table("usage_lines")
    op.drop_table(new)
    for name, columns in _LEDGER_INDEXES.items():
        op.create_index(f"ix_usage_events_{name}", "usage_events", columns)
    _unbilled_index("usage_events")
    _org_scoped("usage_events")
