"""Usage lines by month on PostgreSQL (migration 0039): the table as it stood becomes the
first partition without a copy, while writes go on; the worker makes each month's partition
ahead of it, and a month's lines land in it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from datetime import UTC, date, datetime

import asyncpg
import pytest
from sqlalchemy import text

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from tests.conftest import Clock, make_kernel, new_id, scratch_postgres_database

pytestmark = pytest.mark.anyio


async def partitions_of(database: Database) -> dict[str, str]:
    """Each partition of usage_lines and its bound, as PostgreSQL says them."""
    async with database.read() as conn:
        rows = await conn.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'usage_lines'::regclass"
            )
        )
        return {str(name): str(bound) for name, bound in rows}


async def where_lines_are(database: Database, org_id: str) -> set[str]:
    async with database.read() as conn:
        rows = await conn.execute(
            text("SELECT DISTINCT tableoid::regclass::text FROM usage_lines WHERE org_id = :o"),
            {"o": org_id},
        )
        return set(rows.scalars())


def next_month(month: date) -> date:
    return BillingPeriod.starting(month).next().key


ON_POSTGRESQL = pytest.mark.parametrize("own_url", ["postgres"], indirect=True)
"""A database of the test's own (conftest's `own_url`), on PostgreSQL only: partitions."""


@ON_POSTGRESQL
async def test_the_worker_makes_each_month_ahead_and_a_months_lines_land_in_it(
    own_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    made = await partitions_of(own_database)
    first = next(name for name in made if name.startswith("usage_lines_before_"))
    cut = date(int(first[-7:-3]), int(first[-2:]), 1)  # the month after the migration's
    today = datetime.now(UTC).date()
    assert cut in (next_month(date(today.year, today.month, 1)), date(today.year, today.month, 1))
    assert made == {
        f"usage_lines_before_{cut:%Y_%m}": f"FOR VALUES FROM (MINVALUE) TO ('{cut}')",
        f"usage_lines_{cut:%Y_%m}": f"FOR VALUES FROM ('{cut}') TO ('{next_month(cut)}')",
        "usage_lines_default": "DEFAULT",
    }
    later = next_month(next_month(cut))  # two months past the migration's own
    clock = Clock(datetime(later.year, later.month, 10, tzinfo=UTC))
    kernel = make_kernel(own_database, clock)
    assert await kernel.partitions.make_ahead() == [
        f"usage_lines_{later:%Y_%m}",
        f"usage_lines_{next_month(later):%Y_%m}",
        f"usage_lines_{next_month(next_month(later)):%Y_%m}",
    ]
    assert await kernel.partitions.make_ahead() == []  # made once
    org_id = new_id()
    await kernel.orgs.create(org_id)
    await kernel.usage.record(org_id, "tokens", 5, idempotency_key="now")
    assert await where_lines_are(own_database, org_id) == {f"usage_lines_{later:%Y_%m}"}
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 5

    # Lines of a month with no partition yet go to DEFAULT; that month is then left unmade.
    far = next_month(next_month(next_month(next_month(later))))
    far_kernel = make_kernel(own_database, Clock(datetime(far.year, far.month, 3, tzinfo=UTC)))
    assert await far_kernel.telemetry.lines_in_default() is False
    await far_kernel.usage.record(org_id, "tokens", 1, idempotency_key="far")
    assert "usage_lines_default" in await where_lines_are(own_database, org_id)
    assert await far_kernel.telemetry.lines_in_default() is True  # the operators' metric
    with caplog.at_level(logging.WARNING):
        made_far = await far_kernel.partitions.make_ahead()
    assert f"usage_lines_{far:%Y_%m}" not in made_far
    assert f"usage_lines_{next_month(far):%Y_%m}" in made_far
    assert "DEFAULT partition" in caplog.text


@pytest.mark.parametrize("own_url", ["sqlite"], indirect=True)
def test_sqlite_keeps_one_table(own_url: str) -> None:
    async def make_ahead() -> list[str]:
        database = Database(own_url)
        try:
            return await make_kernel(database, Clock(datetime.now(UTC))).partitions.make_ahead()
        finally:
            await database.dispose()

    assert asyncio.run(make_ahead()) == []


ROWS = 2_000_000


@pytest.mark.long
def test_a_table_of_millions_of_lines_is_converted_while_writes_go_on() -> None:
    """0039 on 2,000,000 lines, with a writer adding lines all along: every line is kept,
    the old table is the first partition (no row copied), and the writer's writes went on
    while the index and the bound were made (they wait only for the catalogue's moment)."""
    with scratch_postgres_database() as url:
        migrate.upgrade(url, "0038")
        dsn = url.replace("postgresql+asyncpg", "postgresql")

        async def fill() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute(
                    "INSERT INTO metrics (key, name, unit, aggregation, position, created_at) "
                    "VALUES ('tokens', 'Tokens', 'tokens', 'sum', 1, now())"
                )
                await conn.execute(
                    "INSERT INTO orgs (org_id, created_at) "
                    "SELECT 'org-' || g, now() FROM generate_series(0, 99) g"
                )
                await conn.execute(
                    "INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, "
                    "occurred_at, period_start) SELECT 'org-' || (g % 100), 'k' || g, "
                    "'tokens', 1 + g % 7, timestamptz '2026-06-01' + g * interval '1 second', "
                    "date '2026-06-01' + (g / 1000000) * 31 FROM generate_series(0, $1 - 1) g",
                    ROWS,
                )
            finally:
                await conn.close()

        asyncio.run(fill())
        started = threading.Event()
        done = threading.Event()
        writes: list[float] = []  # when each of the writer's lines committed

        def writer() -> None:
            async def run() -> None:
                conn = await asyncpg.connect(dsn)
                try:
                    n = 0
                    while not done.is_set():
                        await conn.execute(
                            "INSERT INTO usage_lines (org_id, idempotency_key, metric, "
                            "quantity, occurred_at, period_start) VALUES ('org-1', $1, "
                            "'tokens', 1, now(), date_trunc('month', now())::date)",
                            f"w{n}",
                        )
                        writes.append(time.monotonic())
                        n += 1
                        started.set()
                finally:
                    await conn.close()

            asyncio.run(run())

        thread = threading.Thread(target=writer)
        thread.start()
        assert started.wait(30)
        began = time.monotonic()
        migrate.upgrade(url)
        ended = time.monotonic()
        done.set()
        thread.join(30)

        async def after() -> tuple[int, int, str]:
            conn = await asyncpg.connect(dsn)
            try:
                total = await conn.fetchval("SELECT count(*) FROM usage_lines")
                name = await conn.fetchval(
                    "SELECT relname FROM pg_class WHERE relname LIKE 'usage_lines_before_%'"
                )
                first = await conn.fetchval(f"SELECT count(*) FROM ONLY {name}")
                kind = await conn.fetchval(
                    "SELECT relkind::text FROM pg_class WHERE relname = 'usage_lines'"
                )
                return int(total), int(first), str(kind)
            finally:
                await conn.close()

        total, in_first, kind = asyncio.run(after())
        assert kind == "p"
        assert total == ROWS + len(writes)
        assert in_first == total  # every line is the current month's or before: none moved
        during = [at for at in writes if began < at < ended]
        assert len(during) > 10, "the writer was held for the whole conversion"


@ON_POSTGRESQL
async def test_workers_making_the_same_months_at_once_make_each_once(
    own_database: Database,
) -> None:
    today = datetime.now(UTC).date()
    later = date(today.year + 1, today.month, 1)  # months no test has made yet
    clock = Clock(datetime(later.year, later.month, 5, tzinfo=UTC))
    made = await asyncio.gather(
        *(make_kernel(own_database, clock).partitions.make_ahead() for _ in range(4))
    )
    assert sorted(name for names in made for name in names) == [
        f"usage_lines_{later:%Y_%m}",
        f"usage_lines_{next_month(later):%Y_%m}",
        f"usage_lines_{next_month(next_month(later)):%Y_%m}",
    ]
