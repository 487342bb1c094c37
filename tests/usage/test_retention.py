"""Events forgotten past BILLING_EVENT_RETENTION_MONTHS: a month goes once every line of it
is billed and it is past its retention; its events, lines and unique values go, in batches;
counters, invoices and the usage they recorded stay, and `invoices verify` still passes,
recomputing a forgotten month's invoices from what they recorded."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Table, func, select, text, update

from billing_kernel.background import upkeep
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import (
    invoice_usage,
    usage_counters,
    usage_event_keys,
    usage_events,
    usage_lines,
    usage_repeats,
    usage_unique_values,
)
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import EventsForgotten
from billing_kernel.kernel import Kernel
from billing_kernel.metrics.rules import Aggregation, Metric
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.usage.rules import UsageReport
from billing_kernel.usage.service import RetentionService
from tests.conftest import Clock, make_kernel, new_id
from tests.test_cli import run

pytestmark = pytest.mark.anyio

JANUARY, FEBRUARY, MARCH = (BillingPeriod.parse(f"2026-0{n}") for n in (1, 2, 3))
DAY = timedelta(days=1)


async def rows(database: Database, table: Table, org_id: str, month: BillingPeriod) -> int:
    """The org's rows of `table` of `month` (by period, or by event time for events)."""
    c = table.c
    when = (
        (c.occurred_at >= month.start) & (c.occurred_at < month.end)
        if "period_start" not in c
        else c.period_start == month.key
    )
    async with database.read() as conn:
        query = select(func.count()).select_from(table).where(c.org_id == org_id, when)
        return int((await conn.execute(query)).scalar_one())


async def counters(database: Database) -> list[tuple[object, ...]]:
    async with database.read() as conn:
        c = usage_counters.c
        result = await conn.execute(
            select(c.org_id, c.period_start, c.metric, c.quantity).order_by(
                c.org_id, c.period_start, c.metric
            )
        )
        return [tuple(row) for row in result]


async def active_org(kernel: Kernel, clock: Clock, at: datetime) -> str:
    clock.now = at
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    return org_id


async def month_of_usage(kernel: Kernel, org_id: str, month: BillingPeriod) -> None:
    """Tokens, logins of a unique count, an event no metric counts, and a changed repeat."""
    at = month.start + DAY * 3
    for n in range(5):
        await kernel.usage.record(
            org_id, "tokens", 300_000, idempotency_key=f"{month.key}-t{n}", occurred_at=at
        )
    await kernel.usage.record_batch(
        [
            UsageReport(org_id, None, None, f"{month.key}-l{n}", at, {"user": f"u{n % 2}"}, "login")
            for n in range(3)
        ]
        + [UsageReport(org_id, None, None, f"{month.key}-x", at, None, "nobody.listens")],
        keep_uncounted=True,
    )
    async with kernel.database.transaction() as conn:
        await kernel.usage.note_changed_repeats([(org_id, f"{month.key}-x")], uow=UnitOfWork(conn))


@pytest.fixture
async def kernel(own_database: Database, clock: Clock) -> Kernel:
    kernel = make_kernel(own_database, clock, event_retention_months=1, max_event_age_days=35)
    await kernel.metrics.define(
        Metric("logins", "Users", "users", Aggregation.UNIQUE_COUNT, ("login",), "user")
    )
    await kernel.metrics.define(  # a login's second line
        Metric("sessions", "Sessions", "sessions", Aggregation.COUNT, ("login",))
    )
    return kernel


def in_batches_of_two(kernel: Kernel, database: Database, clock: Clock) -> RetentionService:
    """The kernel's retention, two rows a transaction: every month takes many, and an
    event's two lines fall on both sides of a batch's end."""
    return RetentionService(
        Transactions(database),
        clock,
        kernel.orgs,
        months=1,
        max_event_age=timedelta(days=35),
        batch=2,
    )


async def test_a_billed_month_past_its_retention_is_forgotten_and_its_invoices_still_verify(
    kernel: Kernel, own_database: Database, clock: Clock
) -> None:
    paying = await active_org(kernel, clock, JANUARY.start)
    late = await active_org(kernel, clock, JANUARY.start)  # not billed for January at first
    for month in (JANUARY, FEBRUARY, MARCH):
        clock.now = month.start + DAY * 3
        for org_id in (paying, late):
            await month_of_usage(kernel, org_id, month)
        if month is FEBRUARY:  # a January event arrives late: February's invoice bills it
            await kernel.usage.record(
                paying, "tokens", 100_000, idempotency_key="late", occurred_at=JANUARY.end - DAY
            )
        clock.now = month.end + DAY * 2
        if month is not MARCH:
            assert await kernel.invoices.close(paying, month) is not None

    clock.now = datetime(2026, 3, 7, tzinfo=UTC)  # January is kept 35 days past its end
    assert await kernel.retention.due() == []
    clock.now = datetime(2026, 4, 6, tzinfo=UTC)  # ... and February too; March for a month
    assert await kernel.retention.due() == []  # `late` is billed for neither yet
    assert await kernel.invoices.close(late, JANUARY) is not None
    assert await kernel.retention.due() == [JANUARY.key]
    before = await counters(own_database)
    invoices = [await kernel.invoices.get(i) for i in await invoice_ids(own_database)]
    assert await kernel.invoices.verify() == []

    retention = in_batches_of_two(kernel, own_database, clock)
    assert await retention.forget_due() == [JANUARY.key]
    for org_id in (paying, late):
        for table in (usage_event_keys, usage_events, usage_lines, usage_unique_values):
            assert await rows(own_database, table, org_id, JANUARY) == 0, table.name
            assert await rows(own_database, table, org_id, FEBRUARY) > 0, table.name
            assert await rows(own_database, table, org_id, MARCH) > 0, table.name
    assert await repeats(own_database) == {
        (org_id, f"{month.key}-x") for org_id in (paying, late) for month in (FEBRUARY, MARCH)
    }
    assert await kernel.invoices.verify() == []  # February's bills a forgotten January event
    first = next(i for i in invoices if i.org_id == paying and i.period_start == JANUARY.key)
    explained = await kernel.invoices.explain(first.invoice_id, 2)  # its overage
    assert (explained.events, explained.sample_keys) == (5, ())  # as recorded; keys gone
    for invoice in invoices:  # a correction could not be recomputed: not voided, not changed
        if invoice.org_id == paying:
            with pytest.raises(EventsForgotten, match="bills usage of 2026-01, whose events"):
                await kernel.invoices.void(invoice.invoice_id, "wrong plan")
            assert await kernel.invoices.get(invoice.invoice_id) == invoice

    assert await kernel.invoices.close(late, FEBRUARY) is not None
    assert await retention.forget_due() == [FEBRUARY.key]
    assert await kernel.retention.forget_due() == []  # each month once
    for org_id in (paying, late):
        for table in (usage_event_keys, usage_events, usage_lines, usage_unique_values):
            assert await rows(own_database, table, org_id, FEBRUARY) == 0, table.name
    assert await repeats(own_database) == {(paying, "2026-03-01-x"), (late, "2026-03-01-x")}
    assert await counters(own_database) == before  # the summary's months are kept
    for invoice in invoices:  # invoices and what they recorded are kept as they were
        assert await kernel.invoices.get(invoice.invoice_id) == invoice
    assert await kernel.invoices.verify() == []

    # The operator's view, at the real time: March waits for its invoices (never made here).
    said = await asyncio.to_thread(
        run,
        str(own_database.url),
        "usage",
        "retention",
        env={"BILLING_EVENT_RETENTION_MONTHS": "1"},
    )
    assert said.returncode == 0, said.stderr
    lines = said.stdout.splitlines()
    assert lines[:2] == [
        "events are kept 1 whole month(s) past their month",
        "forgotten: 2026-01, 2026-02",
    ]
    assert lines[2].startswith("due: 2026-04")  # April on: no usage, nothing to keep
    assert lines[3] == "kept until all of the month is invoiced: 2026-03"
    said = await asyncio.to_thread(
        run,
        str(own_database.url),
        "usage",
        "retention",
        "--forget",
        env={"BILLING_EVENT_RETENTION_MONTHS": "1"},
    )
    assert said.stdout.splitlines()[2].startswith("forgot now: 2026-04")
    unset = await asyncio.to_thread(run, str(own_database.url), "usage", "retention")
    assert (
        unset.stdout.splitlines()[0]
        == "BILLING_EVENT_RETENTION_MONTHS is unset: every event is kept"
    )

    # Verification now rests on the usage each invoice recorded of a forgotten month.
    async with own_database.transaction() as conn:
        u = invoice_usage.c
        await conn.execute(
            update(invoice_usage)
            .where(
                u.invoice_id == first.invoice_id,
                u.period_start == JANUARY.key,
                u.metric == "tokens",
            )
            .values(quantity=u.quantity + 1_000_000)
        )
    differences = await kernel.invoices.verify()
    assert differences[0].startswith(f"{first.number} line 2: stored ")


async def invoice_ids(database: Database) -> list[str]:
    async with database.read() as conn:
        result = await conn.execute(text("SELECT invoice_id FROM invoices ORDER BY sequence"))
        return list(result.scalars())


async def repeats(database: Database) -> set[tuple[str, str]]:
    async with database.read() as conn:
        r = usage_repeats.c
        result = await conn.execute(select(r.org_id, r.idempotency_key))
        return {(row.org_id, row.idempotency_key) for row in result}


@pytest.mark.parametrize("own_url", ["postgres"], indirect=True)
async def test_the_upkeep_drops_a_month_with_a_partition_of_its_own_whole(
    kernel: Kernel, own_database: Database, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Its events' and lines' partitions go whole, its keys in batches; a partition whose
    lock is not had within 2 s (a long read holds it) is left for the next round, which
    finishes the month."""
    async with own_database.read() as conn:
        first = await conn.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'usage_lines'::regclass AND c.relname LIKE 'usage_lines_2%'"
            )
        )
        name = first.scalar_one()  # the month after migration 0039's, which made it
        events = name.replace("usage_lines_", "usage_events_")  # 0047's, made for it too
        made = await conn.execute(text("SELECT to_regclass(:name)"), {"name": events})
        assert made.scalar() is not None
    month = BillingPeriod.starting(date(int(name[-7:-3]), int(name[-2:]), 1))
    org_id = await active_org(kernel, clock, month.start)
    clock.now = month.start + DAY * 3
    await month_of_usage(kernel, org_id, month)
    clock.now = month.end + DAY * 2
    invoice = await kernel.invoices.close(org_id, month)
    assert invoice is not None
    clock.now = month.end + timedelta(days=36)
    async with own_database.engine.connect() as reader:  # a long read of the month's events
        await reader.execute(text(f"LOCK TABLE {events} IN ACCESS SHARE MODE"))
        with caplog.at_level(logging.INFO):
            assert await kernel.retention.forget(month.key) is False  # 2 s for the lock
        assert f"dropping {events} waited too long for its lock; later" in caplog.text
        await reader.rollback()
    review = await kernel.retention.review()
    assert (review.forgotten, review.due) == ((month.key,), (month.key,))  # begun, unfinished
    await upkeep(kernel).run_once()  # the worker's hourly round finishes it
    assert await kernel.retention.due() == []
    async with own_database.read() as conn:  # the month's lines and events, both dropped
        for partition in (name, events):
            gone = await conn.execute(text("SELECT to_regclass(:name)"), {"name": partition})
            assert gone.scalar() is None, partition
    for table in (usage_event_keys, usage_events, usage_lines, usage_unique_values):
        assert await rows(own_database, table, org_id, month) == 0, table.name
    assert await kernel.invoices.get(invoice.invoice_id) == invoice
    assert await kernel.invoices.verify() == []
