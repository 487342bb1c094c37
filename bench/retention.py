"""How long forgetting a month of usage takes on PostgreSQL (BILLING_EVENT_RETENTION_MONTHS),
next to the same rows deleted by raw statements in one transaction, the fastest a single
long transaction could do it (and what the kernel never does: it holds the rows' locks and
the vacuum horizon for the whole month). Three months of the same usage, each billed: one
in migrations 0039's and 0047's first partitions, forgotten in batches org by org; one
deleted raw; and one with partitions of its own, whose events and lines go by dropping them
(their keys in batches).

Usage: python bench/retention.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import text

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.usage.rules import UsageReport
from common import migrated, row, run_alone

EVENTS = 100_000
BATCH = 1_000
ORGS = 20


def kernel_at(database: Database, dsn: str, month: date) -> Kernel:
    """A kernel whose clock stands three days into `month`."""
    moment = datetime(month.year, month.month, 4, tzinfo=UTC)
    return Kernel(database, Settings(database_url=dsn), clock=lambda: moment)


async def seed(database: Database, dsn: str, month: date) -> None:
    """EVENTS reports of tokens in `month` over ORGS orgs, every line billed."""
    kernel = kernel_at(database, dsn, month)
    for batch in range(EVENTS // BATCH):
        await kernel.usage.record_batch(
            [
                UsageReport(f"ret-{n % ORGS}", "tokens", 100, f"{month}-{batch}-{n}")
                for n in range(BATCH)
            ]
        )
    async with database.transaction() as conn:
        await conn.execute(
            text("UPDATE usage_lines SET invoice_id = 'bench' WHERE period_start = :m"),
            {"m": month},
        )


async def raw_delete(dsn: str, month: date) -> float:
    """The month's keys, events and lines deleted by one statement each, in one
    transaction."""
    period = BillingPeriod.starting(month)
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg", "postgresql"))
    try:
        started = time.perf_counter()
        async with conn.transaction():
            for table in ("usage_event_keys", "usage_events"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE occurred_at >= $1 AND occurred_at < $2",
                    period.start,
                    period.end,
                )
            await conn.execute("DELETE FROM usage_lines WHERE period_start = $1", month)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def forget(database: Database, dsn: str, month: date) -> float:
    kernel = kernel_at(database, dsn, month)
    started = time.perf_counter()
    assert await kernel.retention.forget(month)
    return time.perf_counter() - started


async def rows_left(dsn: str, month: date) -> int:
    period = BillingPeriod.starting(month)
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg", "postgresql"))
    try:
        events = [
            await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE occurred_at >= $1 AND occurred_at < $2",
                period.start,
                period.end,
            )
            for table in ("usage_event_keys", "usage_events")
        ]
        lines = await conn.fetchval(
            "SELECT count(*) FROM usage_lines WHERE period_start = $1", month
        )
        return sum(int(n) for n in events) + int(lines)
    finally:
        await conn.close()


async def measure(dsn: str) -> dict[str, float]:
    database = Database(dsn)
    try:
        now = BillingPeriod.containing(datetime.now(UTC))
        batched = BillingPeriod.containing(now.start - timedelta(days=70)).key
        raw = BillingPeriod.containing(now.start - timedelta(days=100)).key
        dropped = now.next().key  # 0039 made its partition
        kernel = kernel_at(database, dsn, now.key)
        for n in range(ORGS):
            await kernel.orgs.create(f"ret-{n}", plan_slug="starter")
        for month in (batched, raw, dropped):
            await seed(database, dsn, month)
        timings = {
            "batched": await forget(database, dsn, batched),
            "raw": await raw_delete(dsn, raw),
            "dropped": await forget(database, dsn, dropped),
        }
        for month in (batched, raw, dropped):
            assert await rows_left(dsn, month) == 0, month
        return timings
    finally:
        await database.dispose()


def collect(postgres_url: str) -> list[dict[str, Any]]:
    migrated(postgres_url)
    found = asyncio.run(measure(postgres_url))
    setup = {
        "events": EVENTS,
        "orgs": ORGS,
        "lines per event": 1,
        "baseline": "one DELETE each of the month's keys, events and lines, one transaction",
    }
    return [
        row(
            "forgetting a month in batches (first partition) vs one raw transaction",
            "s",
            found["batched"],
            found["raw"],
            setup | {"events a second": round(EVENTS / found["batched"])},
        ),
        row(
            "forgetting a month with its own partition (dropped) vs one raw transaction",
            "s",
            found["dropped"],
            found["raw"],
            setup | {"events a second": round(EVENTS / found["dropped"])},
        ),
    ]


if __name__ == "__main__":
    run_alone(collect, __doc__)
