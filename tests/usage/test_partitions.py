"""Usage lines by month on PostgreSQL (migration 0039): the table as it stood becomes the
first partition without a copy, while writes go on; the worker makes each month's partition
ahead of it, and a month's lines land in it."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime

import asyncpg
import pytest
from sqlalchemy import text

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import (
    Clock,
    make_kernel,
    migrate_with_demo_catalogue,
    new_id,
    scratch_postgres_database,
)

pytestmark = pytest.mark.anyio


async def partitions_of(database: Database, table: str = "usage_lines") -> dict[str, str]:
    """Each partition of `table` and its bound, as PostgreSQL says them."""
    async with database.read() as conn:
        rows = await conn.execute(
            text(
                "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:table AS regclass)"
            ),
            {"table": table},
        )
        return {str(name): str(bound) for name, bound in rows}


async def where_lines_are(database: Database, org_id: str, table: str = "usage_lines") -> set[str]:
    async with database.read() as conn:
        rows = await conn.execute(
            text(f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE org_id = :o"),
            {"o": org_id},
        )
        return set(rows.scalars())


def first_cut(made: dict[str, str], table: str) -> date:
    """The month a migration's first partition of `table` ends at."""
    first = next(name for name in made if name.startswith(f"{table}_before_"))
    return date(int(first[-7:-3]), int(first[-2:]), 1)


def next_month(month: date) -> date:
    return BillingPeriod.starting(month).next().key


ON_POSTGRESQL = pytest.mark.parametrize("own_url", ["postgres"], indirect=True)
"""A database of the test's own (conftest's `own_url`), on PostgreSQL only: partitions."""


@ON_POSTGRESQL
async def test_the_worker_makes_each_month_ahead_and_a_months_lines_land_in_it(
    own_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    made = await partitions_of(own_database)
    cut = first_cut(made, "usage_lines")  # the month after the migration's
    today = datetime.now(UTC).date()
    assert cut in (next_month(date(today.year, today.month, 1)), date(today.year, today.month, 1))
    assert made == {
        f"usage_lines_before_{cut:%Y_%m}": f"FOR VALUES FROM (MINVALUE) TO ('{cut}')",
        f"usage_lines_{cut:%Y_%m}": f"FOR VALUES FROM ('{cut}') TO ('{next_month(cut)}')",
        "usage_lines_default": "DEFAULT",
    }
    made_events = await partitions_of(own_database, "usage_events")
    events_cut = first_cut(made_events, "usage_events")  # 0047's: the same month, or later
    assert cut <= events_cut
    since, until = f"{events_cut} 00:00:00+00", f"{next_month(events_cut)} 00:00:00+00"
    assert made_events == {
        f"usage_events_before_{events_cut:%Y_%m}": f"FOR VALUES FROM (MINVALUE) TO ('{since}')",
        f"usage_events_{events_cut:%Y_%m}": f"FOR VALUES FROM ('{since}') TO ('{until}')",
        "usage_events_default": "DEFAULT",
    }
    later = next_month(next_month(events_cut))  # two months past the migrations' own
    clock = Clock(datetime(later.year, later.month, 10, tzinfo=UTC))
    kernel = make_kernel(own_database, clock)
    ahead = [later, next_month(later), next_month(next_month(later))]
    assert await kernel.partitions.make_ahead() == [
        *(f"usage_events_{month:%Y_%m}" for month in ahead),
        *(f"usage_lines_{month:%Y_%m}" for month in ahead),
    ]
    assert await kernel.partitions.make_ahead() == []  # made once
    org_id = new_id()
    await kernel.orgs.create(org_id)
    await kernel.usage.record(org_id, "tokens", 5, idempotency_key="now")
    assert await where_lines_are(own_database, org_id) == {f"usage_lines_{later:%Y_%m}"}
    assert await where_lines_are(own_database, org_id, "usage_events") == {
        f"usage_events_{later:%Y_%m}"
    }
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 5

    # Lines of a month with no partition yet go to DEFAULT; that month is then left unmade.
    far = next_month(next_month(next_month(next_month(later))))
    far_kernel = make_kernel(own_database, Clock(datetime(far.year, far.month, 3, tzinfo=UTC)))
    assert await far_kernel.telemetry.lines_in_default() is False
    await far_kernel.usage.record(org_id, "tokens", 1, idempotency_key="far")
    assert "usage_lines_default" in await where_lines_are(own_database, org_id)
    assert "usage_events_default" in await where_lines_are(own_database, org_id, "usage_events")
    assert await far_kernel.telemetry.lines_in_default() is True  # the operators' metric
    with caplog.at_level(logging.WARNING):
        made_far = await far_kernel.partitions.make_ahead()
    for table in ("usage_lines", "usage_events"):
        assert f"{table}_{far:%Y_%m}" not in made_far
        assert f"{table}_{next_month(far):%Y_%m}" in made_far
        assert f"{table} of {far} are in the DEFAULT partition" in caplog.text
    async with own_database.transaction() as conn:  # the lines moved out, the event not yet
        await conn.execute(text("DELETE FROM usage_lines_default"))
    assert await far_kernel.telemetry.lines_in_default() is True
    async with own_database.transaction() as conn:
        await conn.execute(text("DELETE FROM usage_events_default"))
    assert await far_kernel.telemetry.lines_in_default() is False


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


class Writer:
    """A connection writing all along in a thread of its own, as a kernel does while a
    migration runs: `write(conn, n)` for n = 0, 1, ...; when each write committed."""

    def __init__(self, dsn: str, write: Callable[[asyncpg.Connection, int], Awaitable[None]]):
        self.committed: list[float] = []
        self.failed: BaseException | None = None
        self._started, self._done = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._main, args=(dsn, write))

    def _main(self, dsn: str, write: Callable[[asyncpg.Connection, int], Awaitable[None]]) -> None:
        try:
            asyncio.run(self._run(dsn, write))
        except BaseException as exc:  # a write refused (a deadlock): the test's failure
            self.failed = exc
        finally:
            self._started.set()  # a writer that failed at once does not keep __enter__ waiting

    async def _run(
        self, dsn: str, write: Callable[[asyncpg.Connection, int], Awaitable[None]]
    ) -> None:
        conn = await asyncpg.connect(dsn)
        try:
            n = 0
            while not self._done.is_set():
                await write(conn, n)
                self.committed.append(time.monotonic())
                n += 1
                self._started.set()
        finally:
            await conn.close()

    def __enter__(self) -> Writer:
        self._thread.start()
        assert self._started.wait(30)
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(30)
        if self.failed is not None:
            raise AssertionError(f"a write failed: {self.failed!r}") from self.failed

    def during(self, began: float, ended: float) -> int:
        """How many writes committed between `began` and `ended`."""
        return len([at for at in self.committed if began < at < ended])


def timed(step: Callable[[], None]) -> tuple[float, float]:
    began = time.monotonic()
    step()
    return began, time.monotonic()


async def fill(dsn: str, *statements: str) -> None:
    """The demo's `tokens` metric, 100 orgs, then `statements` (each given ROWS as $1)."""
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
        # The rows name orgs and a metric made just above: their foreign keys' checks, a
        # trigger call a row, are skipped (half the time of filling).
        await conn.execute("SET session_replication_role = replica")
        for statement in statements:
            await conn.execute(statement, ROWS)
    finally:
        await conn.close()


async def fetch(dsn: str, *queries: str) -> list[object]:
    conn = await asyncpg.connect(dsn)
    try:
        return [await conn.fetchval(query) for query in queries]
    finally:
        await conn.close()


@pytest.mark.long
def test_a_table_of_millions_of_lines_is_converted_while_writes_go_on() -> None:
    """0039 on 2,000,000 lines, with a writer adding lines all along: every line is kept,
    the old table is the first partition (no row copied), and the writer's writes went on
    while the index and the bound were made (they wait only for the catalogue's moment)."""
    with scratch_postgres_database() as url:
        migrate.upgrade(url, "0038")
        dsn = url.replace("postgresql+asyncpg", "postgresql")
        asyncio.run(
            fill(
                dsn,
                "INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, "
                "occurred_at, period_start) SELECT 'org-' || (g % 100), 'k' || g, "
                "'tokens', 1 + g % 7, timestamptz '2026-06-01' + g * interval '1 second', "
                "date '2026-06-01' + (g / 1000000) * 31 FROM generate_series(0, $1 - 1) g",
            )
        )

        async def write(conn: asyncpg.Connection, n: int) -> None:
            await conn.execute(
                "INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, "
                "occurred_at, period_start) VALUES ('org-1', $1, 'tokens', 1, now(), "
                "date_trunc('month', now())::date)",
                f"w{n}",
            )

        with Writer(dsn, write) as writer:
            began, ended = timed(lambda: migrate.upgrade(url, "0039"))
        total, name, kind = asyncio.run(
            fetch(
                dsn,
                "SELECT count(*) FROM usage_lines",
                "SELECT relname FROM pg_class WHERE relname LIKE 'usage_lines_before_%'",
                "SELECT relkind::text FROM pg_class WHERE relname = 'usage_lines'",
            )
        )
        [in_first] = asyncio.run(fetch(dsn, f"SELECT count(*) FROM ONLY {name}"))
        assert kind == "p"
        assert total == ROWS + len(writer.committed)
        assert in_first == total  # every line is the current month's or before: none moved
        assert writer.during(began, ended) > 10, "the writer was held for the whole conversion"


_EVENT = (
    "INSERT INTO usage_events (org_id, idempotency_key, event, quantity, occurred_at, "
    "received_at) VALUES ('org-1', $1, 'tokens', 1, now(), now())"
)


@pytest.mark.long
def test_a_table_of_millions_of_events_is_converted_while_writes_go_on() -> None:
    """0046 and 0047 on 2,000,000 events, rolled out as docs/operations.md says: kernels of
    the earlier version write events (and take some back) while 0046 copies the keys, kernels
    of this version write keys and events while 0047 converts the table. Every event is kept
    with its key and no key without its event, the old table is the first partition (no row
    copied), and the writes went on while each migration ran."""
    with scratch_postgres_database() as url:
        migrate.upgrade(url, "0045")
        dsn = url.replace("postgresql+asyncpg", "postgresql")
        asyncio.run(
            fill(
                dsn,
                "INSERT INTO usage_events (org_id, idempotency_key, event, quantity, "
                "occurred_at, received_at) SELECT 'org-' || (g % 100), 'k' || g, 'tokens', "
                "1 + g % 7, timestamptz '2026-06-01' + g * interval '1 second', now() "
                "FROM generate_series(0, $1 - 1) g",
            )
        )

        async def earlier_kernel(conn: asyncpg.Connection, n: int) -> None:
            await conn.execute(
                _EVENT + " ON CONFLICT (org_id, idempotency_key) DO NOTHING", f"a{n}"
            )
            if n % 5 == 0:  # a refused consume's event, taken back
                await conn.execute(
                    "DELETE FROM usage_events WHERE org_id = 'org-1' AND idempotency_key = $1",
                    f"a{n}",
                )

        with Writer(dsn, earlier_kernel) as earlier:
            expanded = timed(lambda: migrate.upgrade(url, "0046"))

        async def this_kernel(conn: asyncpg.Connection, n: int) -> None:
            async with conn.transaction():
                new = await conn.fetchval(
                    "INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at) "
                    "VALUES ('org-1', $1, now()) ON CONFLICT DO NOTHING RETURNING 1",
                    f"b{n}",
                )
                if new:
                    await conn.execute(_EVENT, f"b{n}")

        with Writer(dsn, this_kernel) as later:
            converted = timed(lambda: migrate.upgrade(url, "0047"))
        kept = len(earlier.committed) - len(range(0, len(earlier.committed), 5))
        total, keys, unmatched, name, kind = asyncio.run(
            fetch(
                dsn,
                "SELECT count(*) FROM usage_events",
                "SELECT count(*) FROM usage_event_keys",
                "SELECT count(*) FROM usage_events e FULL JOIN usage_event_keys k "
                "USING (org_id, idempotency_key, occurred_at) "
                "WHERE e.org_id IS NULL OR k.org_id IS NULL",
                "SELECT relname FROM pg_class WHERE relname LIKE 'usage_events_before_%'",
                "SELECT relkind::text FROM pg_class WHERE relname = 'usage_events'",
            )
        )
        [in_first] = asyncio.run(fetch(dsn, f"SELECT count(*) FROM ONLY {name}"))
        assert kind == "p"
        assert total == keys == ROWS + kept + len(later.committed)
        assert unmatched == 0
        assert in_first == total  # none moved
        assert earlier.during(*expanded) > 10, "the earlier kernel was held while keys were copied"
        assert later.during(*converted) > 10, "the writer was held for the whole conversion"


def test_between_the_two_steps_kernels_of_both_versions_keep_the_keys_whole() -> None:
    """At 0046 on PostgreSQL a kernel that writes keys (this version's usage writes, as the
    version that ran between the two steps wrote them) decides through the keys (a repeat,
    a refused consume taken back), while an earlier kernel's events, written to usage_events
    alone, get their keys from 0046's triggers; after 0047 every event still counts once."""
    with scratch_postgres_database() as url:
        migrate.upgrade(url, "0045")
        dsn = url.replace("postgresql+asyncpg", "postgresql")
        # This version writes and reads each plan metric's price model, which 0049 adds,
        # plans' features, which 0050 adds, and prices per dimension, which 0052 adds: lent
        # to the schema until the migrations run on.
        price = "ADD COLUMN price_model varchar(16) NOT NULL DEFAULT 'per_unit', "
        price += "ADD COLUMN price_tiers text, "
        price += "ADD COLUMN price_dimension varchar(64), ADD COLUMN dimension_prices text"
        features = (
            "CREATE TABLE plan_features (plan_slug varchar(64), version int, "
            "feature varchar(64), value varchar(400), PRIMARY KEY (plan_slug, version, feature))"
        )
        asyncio.run(fetch(dsn, f"ALTER TABLE plan_metrics {price}", features))
        migrate_with_demo_catalogue(url, "0045")
        asyncio.run(  # a month an earlier kernel forgot: 0046 looks for keys left of it
            fetch(dsn, "INSERT INTO usage_forgotten_months VALUES ('2026-01-01', now(), now())")
        )
        migrate.upgrade(url, "0046")
        # This version writes the outbox by 0048's key; the one between the steps wrote it
        # by the event's id alone. Lend the old outbox the new key for the test's alerts.
        lent = "billing_events_org_id_event_id"
        asyncio.run(fetch(dsn, f"CREATE UNIQUE INDEX {lent} ON billing_events (org_id, event_id)"))
        org_id = new_id()

        async def at_the_first_step() -> None:
            database = Database(url)
            kernel = make_kernel(database, Clock(datetime.now(UTC)))
            try:
                await kernel.orgs.create(org_id, plan_slug="starter")
                await kernel.quota.set_override(
                    org_id,
                    "tokens",
                    LimitOverride(included_quantity=100, sets_included=True, mode=Enforcement.HARD),
                )
                await kernel.usage.record(org_id, "tokens", 5, idempotency_key="a")
                again = await kernel.usage.record(org_id, "tokens", 5, idempotency_key="a")
                assert again.status is RecordStatus.DUPLICATE
                for key, amount, allowed in (("c1", 90, True), ("c2", 50, False), ("c3", 5, True)):
                    consumed = await kernel.quota.consume(
                        org_id, "tokens", amount, idempotency_key=key
                    )
                    assert consumed.decision.allowed is allowed, key  # c2's event taken back
            finally:
                await database.dispose()
            conn = await asyncpg.connect(dsn)
            try:  # an earlier kernel's event: usage_events alone
                await conn.execute(
                    "INSERT INTO usage_events (org_id, idempotency_key, event, quantity, "
                    "occurred_at, received_at) VALUES ($1, 'old', 'tokens', 0, now(), now()) "
                    "ON CONFLICT (org_id, idempotency_key) DO NOTHING",
                    org_id,
                )
            finally:
                await conn.close()

        asyncio.run(at_the_first_step())
        asyncio.run(fetch(dsn, f"DROP INDEX {lent}"))
        asyncio.run(
            fetch(
                dsn,
                "ALTER TABLE plan_metrics DROP COLUMN price_model, DROP COLUMN price_tiers, "
                "DROP COLUMN price_dimension, DROP COLUMN dimension_prices",
                "DROP TABLE plan_features",
            )
        )
        migrate.upgrade(url)

        async def after_both() -> None:
            database = Database(url)
            kernel = make_kernel(database, Clock(datetime.now(UTC)))
            try:
                for key, amount in (("a", 5), ("c1", 90), ("c3", 5)):
                    [outcome] = (
                        await kernel.usage.record_batch(
                            [UsageReport(org_id, "tokens", amount, key, None, None)]
                        )
                    ).outcomes
                    assert outcome.status is not RecordStatus.ACCEPTED, key
                old = await kernel.usage.record(org_id, "tokens", 0, idempotency_key="old")
                assert old.status is RecordStatus.DUPLICATE  # its key came from the trigger
                assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 100
            finally:
                await database.dispose()
            [keys, events, unmatched] = await fetch(
                dsn,
                "SELECT count(*) FROM usage_event_keys",
                "SELECT count(*) FROM usage_events",
                "SELECT count(*) FROM usage_events e FULL JOIN usage_event_keys k "
                "USING (org_id, idempotency_key, occurred_at) "
                "WHERE e.org_id IS NULL OR k.org_id IS NULL",
            )
            assert (keys, events, unmatched) == (4, 4, 0)

        asyncio.run(after_both())


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
    months = [later, next_month(later), next_month(next_month(later))]
    assert sorted(name for names in made for name in names) == [
        *(f"usage_events_{month:%Y_%m}" for month in months),
        *(f"usage_lines_{month:%Y_%m}" for month in months),
    ]
