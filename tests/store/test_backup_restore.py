"""Backup and restore, proven as docs/operations.md describes it: a busy PostgreSQL database
(usage by metric and by named event, consumes, invoices closed, one paid, a credit note),
dumped with `pg_dump -Fc` and restored with `pg_restore` into a new database, answers the
same: every table's rows, the usage sums, the invoices, and `invoices verify` passes on it."""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.db.tables import metadata
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.usage.rules import UsageReport
from tests.commands import run_command
from tests.conftest import Clock, own_database_url, scratch_postgres_database

pytestmark = pytest.mark.long


def postgres_tool(tool: str, url: str, *args: str) -> None:
    """Run PostgreSQL's `tool` against the database at `url` (its libpq variables)."""
    where = make_url(url)
    env = {
        **os.environ,
        "PGHOST": where.host or "127.0.0.1",
        "PGPORT": str(where.port or 5432),
        "PGUSER": where.username or "postgres",
        "PGPASSWORD": where.password or "",
    }
    done = subprocess.run(
        [tool, *args, "--dbname", str(where.database)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


async def busy(url: str) -> None:
    """Two months of a few orgs' work, the earlier one closed into invoices."""
    last_month = BillingPeriod.containing(datetime.now(UTC)).previous().previous()
    clock = Clock(last_month.start)
    database = Database(url)
    kernel = Kernel(database, Settings(database_url=url), clock=clock)  # type: ignore[arg-type]
    try:
        for n, org in enumerate(("acme", "globex", "initech")):
            await kernel.orgs.create(org, plan_slug="starter")
            await kernel.subscriptions.set_status(org, BillingStatus.ACTIVE)
            clock.advance(hours=1)
            await kernel.usage.record_batch(
                [UsageReport(org, "tokens", 400_000 * (n + 1), f"{org}-{k}") for k in range(3)]
                + [UsageReport(org, None, None, f"{org}-named", None, {"value": 7}, "tokens")]
            )
            await kernel.quota.consume(org, "playbook_runs", 2, idempotency_key=f"{org}-run")
        clock.advance(days=40)  # into the next month: the last one closes
        report = await kernel.invoices.close_due()
        assert len(report.closed) == 3
        first = report.closed[0]
        await kernel.invoices.mark_paid(first.invoice_id)
        await kernel.credit_notes.issue(first.invoice_id, "goodwill", [(1, Decimal("5"))])
        await kernel.usage.record("acme", "tokens", 1_000, idempotency_key="this-month")
    finally:
        await database.dispose()


async def contents(url: str) -> dict[str, object]:
    """Every table's rows (as text, in order), and the usage sums by org and metric."""
    database = Database(url)
    seen: dict[str, object] = {}
    try:
        async with database.transaction() as conn:
            for table in metadata.sorted_tables:
                rows = await conn.execute(
                    text(f"SELECT * FROM {table.name} ORDER BY 1, 2")
                    if len(table.columns) > 1
                    else text(f"SELECT * FROM {table.name} ORDER BY 1")
                )
                seen[table.name] = sorted(tuple(map(str, row)) for row in rows)
            sums = await conn.execute(
                text(
                    "SELECT org_id, metric, sum(quantity) FROM usage_lines "
                    "GROUP BY org_id, metric ORDER BY 1, 2"
                )
            )
            seen["sums"] = [tuple(row) for row in sums]
    finally:
        await database.dispose()
    return seen


def test_a_dump_restored_into_a_new_database_answers_the_same(tmp_path: Path) -> None:
    dump = tmp_path / "billing.dump"
    with own_database_url("postgres", tmp_path) as source:
        asyncio.run(busy(source))
        before = asyncio.run(contents(source))
        postgres_tool("pg_dump", source, "--format=custom", "--file", str(dump))
    assert dump.stat().st_size > 0
    with scratch_postgres_database() as restored:
        postgres_tool("pg_restore", restored, "--exit-on-error", "--no-owner", str(dump))
        after = asyncio.run(contents(restored))
        verified = run_command(
            "invoices", "verify", env={**os.environ, "BILLING_DATABASE_URL": restored}
        )
    assert after == before
    assert len(before["invoices"]) == 3  # type: ignore[arg-type]
    assert len(before["credit_notes"]) == 1  # type: ignore[arg-type]
    assert ("acme", "tokens", 1_200_007 + 1_000) in before["sums"]  # type: ignore[operator]
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == (
        "every invoice is as recomputed, and its credit notes agree; the numbers have no gaps"
    )
