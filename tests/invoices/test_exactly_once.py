"""Every usage event is billed by exactly one invoice that counts, whatever the order of
closes, late events, voids and plan changes; invoices recomputed from what they recorded
are what they were; numbers have no gaps. On a database of the test's own, both kinds."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from billing_kernel.background import period_closer
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.db.tables import invoice_usage, invoices, usage_lines
from billing_kernel.events.rules import EventType
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock

pytestmark = [pytest.mark.anyio, pytest.mark.long]

PLANS = ("starter", "growth", "enterprise", "internal-dev")
METRICS = ("tokens", "playbook_runs")


def kernel_at(database: Database, clock: Clock) -> Kernel:
    return Kernel(database, Settings(database_url=str(database.url)), clock=clock)  # type: ignore[arg-type]


async def billed_by_live_invoices(database: Database) -> dict[tuple[str, str], int]:
    """What the invoices that count billed, by org and metric (seats left out: a peak, not
    events)."""
    async with database.transaction() as conn:
        rows = await conn.execute(
            select(invoices.c.org_id, invoice_usage.c.metric, func.sum(invoice_usage.c.quantity))
            .join(invoices, invoices.c.invoice_id == invoice_usage.c.invoice_id)
            .where(invoices.c.status != "void", invoice_usage.c.metric.in_(METRICS))
            .group_by(invoices.c.org_id, invoice_usage.c.metric)
        )
        return {(org, metric): int(total) for org, metric, total in rows if total}


async def recorded(database: Database, before: datetime) -> dict[tuple[str, str], int]:
    """The events of periods that have closed, by org and metric."""
    async with database.transaction() as conn:
        rows = await conn.execute(
            select(usage_lines.c.org_id, usage_lines.c.metric, func.sum(usage_lines.c.quantity))
            .where(usage_lines.c.period_start < BillingPeriod.containing(before).key)
            .group_by(usage_lines.c.org_id, usage_lines.c.metric)
        )
        return {(org, metric): int(total) for org, metric, total in rows}


async def test_a_year_of_usage_with_late_events_plan_changes_and_voids_is_billed_exactly_once(
    own_database: Database,
) -> None:
    rng = random.Random(20261128)
    clock = Clock(datetime(2025, 12, 1, tzinfo=UTC))
    kernel = kernel_at(own_database, clock)
    orgs = [f"org-{n:02d}" for n in range(8)]
    for org_id in orgs:
        clock.advance(hours=rng.randrange(1, 48))
        await kernel.orgs.create(org_id, plan_slug=rng.choice(PLANS[:3]))
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    end = datetime(2026, 12, 3, tzinfo=UTC)
    n = 0
    while clock.now < end - timedelta(days=3):
        clock.advance(days=3, hours=rng.randrange(0, 5))
        for org_id in orgs:
            for _ in range(rng.randrange(0, 3)):
                n += 1
                back = timedelta(hours=rng.randrange(0, 60))  # some land in a closed month
                await kernel.usage.record(
                    org_id,
                    rng.choice(METRICS),
                    rng.choice((1, 7, 250, 90_000, 400_000)),
                    idempotency_key=f"e{n}",
                    occurred_at=clock.now - back,
                )
            roll = rng.random()
            if roll < 0.06:
                await kernel.subscriptions.set_plan(org_id, rng.choice(PLANS))
            elif roll < 0.09:
                await kernel.subscriptions.set_status(
                    org_id, rng.choice([BillingStatus.PAST_DUE, BillingStatus.ACTIVE])
                )
        await kernel.invoices.close_due()
        if rng.random() < 0.15:
            recent = await kernel.invoices.list_invoices(None, limit=5)
            open_ones = [i for i in recent if i.status == "open"]
            if open_ones:
                await kernel.invoices.void(rng.choice(open_ones).invoice_id, "corrected terms")
    clock.now = end
    await kernel.invoices.close_due()
    assert await kernel.invoices.verify() == []
    assert await billed_by_live_invoices(own_database) == await recorded(own_database, end)
    live = defaultdict(int)
    for invoice in await kernel.invoices.list_invoices(None, limit=1000):
        if invoice.status != "void":
            live[invoice.org_id, invoice.period_start] += 1
    assert set(live.values()) == {1}
    assert len(live) == len(orgs) * 12  # December 2025 to November 2026, each once


async def test_concurrent_closes_and_late_events_bill_each_event_once_and_number_without_gaps(
    own_database: Database,
) -> None:
    october = BillingPeriod.parse("2026-10")
    clock = Clock(october.start)
    kernel = kernel_at(own_database, clock)
    orgs = [f"org-{n:02d}" for n in range(12)]
    for org_id in orgs:
        await kernel.orgs.create(org_id, plan_slug="starter")
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.now = october.end - timedelta(hours=1)
    for n, org_id in enumerate(orgs):
        await kernel.usage.record(org_id, "tokens", 600_000 + n, idempotency_key="last-hour")
    clock.now = october.end + timedelta(days=1, minutes=1)  # October has closed

    async def late(org_id: str) -> None:
        await kernel.usage.record(
            org_id,
            "tokens",
            1_000,
            idempotency_key="late",
            occurred_at=october.end - timedelta(minutes=5),
        )

    closers = [kernel_at(own_database, clock) for _ in range(4)]
    await asyncio.gather(
        *(closer.invoices.close_due() for closer in closers), *(late(o) for o in orgs)
    )
    november = october.next()
    clock.now = november.end + timedelta(days=1, minutes=1)
    await asyncio.gather(*(closer.invoices.close_due() for closer in closers))
    made = await kernel.invoices.list_invoices(None, limit=100)
    assert sorted(invoice.sequence for invoice in made) == list(range(1, 2 * len(orgs) + 1))
    assert await kernel.invoices.verify() == []
    billed = await billed_by_live_invoices(own_database)
    assert billed == {(o, "tokens"): 601_000 + n for n, o in enumerate(orgs)}


async def test_the_worker_closes_due_periods_on_its_schedule(own_database: Database) -> None:
    september = BillingPeriod.parse("2026-09")
    clock = Clock(september.start)
    kernel = kernel_at(own_database, clock)
    await kernel.orgs.create("acme", plan_slug="growth")
    await kernel.subscriptions.set_status("acme", BillingStatus.ACTIVE)
    clock.now = september.end + timedelta(days=40)  # September and October have closed
    closer = period_closer(kernel)
    running = asyncio.create_task(closer.run())
    try:
        deadline = time.monotonic() + 30
        while closer.closed < 2:  # the closer's rounds have closed both months
            assert time.monotonic() < deadline, "the closer did not close both months"
            await asyncio.sleep(0.02)
    finally:
        closer.stop()
        await running
    made = await kernel.invoices.list_invoices("acme")
    assert [(f"{i.period_start:%Y-%m}", str(i.total)) for i in made] == [
        ("2026-10", "199.00"),
        ("2026-09", "199.00"),
    ]


async def test_verify_reports_an_invoice_whose_status_and_payment_disagree(
    own_database: Database,
) -> None:
    april = BillingPeriod.parse("2026-04")
    clock = Clock(april.start)
    kernel = kernel_at(own_database, clock)
    for org_id in ("org-a", "org-b", "org-c"):
        await kernel.orgs.create(org_id, plan_slug="starter")
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.now = april.end + timedelta(days=2)
    made = (await kernel.invoices.close_due()).closed
    assert await kernel.invoices.verify() == []
    first, second, third = sorted(made, key=lambda i: i.sequence)
    async with own_database.transaction() as conn:
        await conn.execute(
            invoices.update()
            .where(invoices.c.invoice_id == first.invoice_id)
            .values(status="void", voided_at=clock.now, paid_at=clock.now)
        )
        await conn.execute(
            invoices.update()
            .where(invoices.c.invoice_id == second.invoice_id)
            .values(status="paid")
        )
        await conn.execute(
            invoices.update()
            .where(invoices.c.invoice_id == third.invoice_id)
            .values(paid_at=clock.now)
        )
    found = await kernel.invoices.verify()
    assert found[:3] == [
        f"{first.number}: void, but with a payment time and with a void time",
        f"{second.number}: paid, but without a payment time and without a void time",
        f"{third.number}: open, but with a payment time and without a void time",
    ]


async def test_a_void_at_the_same_clock_reading_as_a_later_invoice_verifies(
    own_database: Database,
) -> None:
    """The May invoice adjusts April's late usage against April's invoice, which counted
    then; voiding April's invoice at the very same instant does not make May's wrong."""
    april = BillingPeriod.parse("2026-04")
    clock = Clock(april.start)
    kernel = kernel_at(own_database, clock)
    await kernel.orgs.create("org-a", plan_slug="starter")
    await kernel.subscriptions.set_status("org-a", BillingStatus.ACTIVE)
    await kernel.usage.record("org-a", "tokens", 1_200_000, idempotency_key="t1")
    clock.now = april.end + timedelta(days=1)
    april_invoice = await kernel.invoices.close("org-a", april)
    assert april_invoice is not None
    await kernel.usage.record(
        "org-a", "tokens", 100_000, idempotency_key="late", occurred_at=april.end - timedelta(1)
    )
    clock.now = april.next().end + timedelta(days=1)  # frozen from here on
    may_invoice = await kernel.invoices.close("org-a", april.next())
    assert may_invoice is not None
    assert may_invoice.lines[-1].formula.endswith("less 4.00 billed → 2.00")
    await kernel.invoices.void(april_invoice.invoice_id, "the same instant")
    assert await kernel.invoices.verify() == []


async def test_one_org_beyond_the_amount_bounds_does_not_stop_the_others_invoices(
    own_url: str, own_database: Database
) -> None:
    """Five legal events of 10^12 runs, counted while the org's runs were unlimited, price
    its month beyond what an amount may be once its limit is back (ingestion refuses such
    events: `test_amount_bounds.py`; a change of terms since is the closer's to meet): its
    invoice is reported as not made (an event for the operator, a line from the CLI), and the
    other five orgs are invoiced, round after round."""
    april = BillingPeriod.parse("2026-04")
    clock = Clock(april.start)
    kernel = kernel_at(own_database, clock)
    orgs = [f"org-{n}" for n in range(6)]
    for org_id in orgs:
        await kernel.orgs.create(org_id, plan_slug="starter")
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await kernel.quota.set_override("org-2", "playbook_runs", None)  # unlimited
    for n in range(5):
        await kernel.usage.record("org-2", "playbook_runs", 10**12, idempotency_key=f"huge-{n}")
    await kernel.quota.clear_override("org-2", "playbook_runs")
    clock.now = april.end + timedelta(days=2)

    for _ in range(2):  # the next round meets the same org, and still closes the others
        report = await kernel.invoices.close_due()  # May is not due: April only
        [failure] = report.failed
        assert (failure.org_id, failure.period) == ("org-2", april)
        assert "beyond the 999,999,999,999.99 an amount may be" in failure.reason
    assert report.closed == ()  # made in the first round
    listed = await kernel.invoices.list_invoices(None)
    assert sorted(i.org_id for i in listed) == ["org-0", "org-1", "org-3", "org-4", "org-5"]
    assert await kernel.invoices.verify() == []

    logged = await kernel.events.events(org_id=None, types=[EventType.INVOICE_CLOSE_FAILED])
    [(_, event)] = logged  # once, however often the closer meets it
    assert (event.org_id, event.data["org_id"]) == ("org-2", "org-2")
    assert event.for_operators  # the org's own readers do not see it:
    shown = await kernel.events.events(org_id="org-2", operators_too=False)
    assert event.event_id not in {e.event_id for _, e in shown}
    assert event.event_id in {e.event_id for _, e in await kernel.events.events(org_id="org-2")}
    assert event.data["period"] == {"start": "2026-04-01", "end": "2026-05-01"}
    assert event.data["reason"] == failure.reason

    closing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "billing_kernel",
        "invoices",
        "close",
        env={**os.environ, "BILLING_DATABASE_URL": own_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = (text.decode() for text in await asyncio.wait_for(closing.communicate(), 60))
    assert closing.returncode == 1  # the months since April close; org-2's wait for April
    assert [line for line in out.splitlines() if "org-2" in line] == [
        f"not invoiced: org-2 2026-04: {failure.reason}"
    ]
    assert "invoice(s) finalized" in out
    assert "1 org(s) could not be invoiced" in err
