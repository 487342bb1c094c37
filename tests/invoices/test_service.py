"""The upcoming invoice through the services, on both databases: the subscription history
each change of plan or status writes, billed to the second."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import subscription_history
from billing_kernel.errors import InvoicePaid, PeriodNotClosed
from billing_kernel.invoices.rules import LineKind
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.usage.rules import UsageReport
from tests.conftest import Clock, new_id, save_plan

pytestmark = pytest.mark.anyio

DAY = timedelta(days=1)


async def history_rows(database: Database, org_id: str) -> int:
    async with database.transaction() as conn:
        query = select(func.count()).where(subscription_history.c.org_id == org_id)
        return int((await conn.execute(query)).scalar_one())


async def test_the_upcoming_invoice_bills_each_stretch_of_the_month_on_what_was_in_force(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    clock.now = datetime(2026, 5, 1, tzinfo=UTC)  # May: 31 days
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    trial = await kernel.invoices.upcoming(org_id)
    assert (trial.lines, trial.total, trial.currency) == ((), Decimal("0.00"), "USD")

    clock.advance(days=10)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await kernel.usage.record(org_id, "tokens", 1_500_000, idempotency_key=new_id("e"))
    paying = await kernel.invoices.upcoming(org_id)
    assert [(line.kind, str(line.amount)) for line in paying.lines] == [
        (LineKind.PRORATION_CHARGE, "33.19"),  # 49.00 x 21 / 31 days
        (LineKind.OVERAGE, "10.00"),  # 500,000 tokens over, 0.02 per 1,000
    ]

    clock.advance(days=10)
    await kernel.subscriptions.set_plan(org_id, "growth")
    await kernel.subscriptions.set_status(
        org_id, BillingStatus.ACTIVE
    )  # no change: nothing written
    upgraded = await kernel.invoices.upcoming(org_id)
    assert [(line.kind, line.plan_slug, str(line.amount)) for line in upgraded.lines] == [
        (LineKind.PRORATION_CHARGE, "starter", "33.19"),
        (LineKind.PRORATION_CREDIT, "starter", "-17.39"),  # 49.00 x 11 / 31 days
        (LineKind.PRORATION_CHARGE, "growth", "70.61"),  # 199.00 x 11 / 31 days
    ]  # the month's usage is priced by growth, which includes 5,000,000 tokens
    assert upgraded.total == Decimal("86.41")
    assert await history_rows(database, org_id) == 3
    assert await kernel.invoices.upcoming(org_id) == upgraded  # recomputed, the same


async def test_a_closed_period_is_invoiced_once_and_a_late_event_adjusts_the_next_invoice(
    kernel: Kernel, clock: Clock
) -> None:
    april = BillingPeriod.parse("2026-04")
    clock.now = april.start
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.now = april.start + DAY * 9
    await kernel.usage.record(org_id, "tokens", 1_200_000, idempotency_key="t1")
    clock.now = april.end + timedelta(hours=23)  # within the 24 hours' grace: still open
    with pytest.raises(PeriodNotClosed, match="2026-05-02 00:00"):
        await kernel.invoices.close(org_id, april)
    clock.now = april.end + DAY
    first = await kernel.invoices.close(org_id, april)
    assert first is not None
    assert (first.status, first.currency, str(first.total)) == ("open", "USD", "53.00")
    assert re.fullmatch(r"INV-[0-9]{6}", first.number)
    assert [(line.kind, str(line.amount)) for line in first.lines] == [
        ("base_fee", "49.00"),
        ("overage", "4.00"),
    ]
    assert await kernel.invoices.close(org_id, april) == first  # once

    # An April event arrives after April closed: it adjusts May's invoice, priced as April.
    clock.advance(hours=1)
    await kernel.usage.record(
        org_id, "tokens", 100_000, idempotency_key="late", occurred_at=april.end - DAY
    )
    upcoming = await kernel.invoices.upcoming(org_id)
    assert [(line.kind, str(line.amount)) for line in upcoming.lines][-1] == ("adjustment", "2.00")
    may = april.next()
    clock.now = may.end + DAY
    second = await kernel.invoices.close(org_id, may)
    assert second is not None
    assert second.sequence == first.sequence + 1
    adjustment = second.lines[-1]
    assert (adjustment.kind, adjustment.period_start, str(adjustment.amount)) == (
        "adjustment",
        april.key,
        "2.00",
    )
    assert adjustment.formula == (
        "(1,300,000 - 1,000,000) x 0.02 / 1,000 = 6 → 6.00, less 4.00 billed → 2.00"
    )
    explained = await kernel.invoices.explain(second.invoice_id, adjustment.number)
    assert (explained.events, explained.sample_keys) == (1, ("late",))
    tokens = [u for invoice in (first, second) for u in invoice.usage if u.metric == "tokens"]
    assert sum(u.quantity for u in tokens) == 1_300_000  # every event billed exactly once

    # Paid stays paid; an open invoice is voided with a reason and corrected.
    assert (await kernel.invoices.mark_paid(first.number)).status == "paid"
    with pytest.raises(InvoicePaid):
        await kernel.invoices.void(first.invoice_id, "wrong")
    correction = await kernel.invoices.void(second.invoice_id, "a duplicate charge disputed")
    assert (correction.replaces, correction.total, correction.status) == (
        second.invoice_id,
        second.total,
        "open",
    )
    voided = await kernel.invoices.get(second.invoice_id)
    assert (voided.status, voided.void_reason) == ("void", "a duplicate charge disputed")
    assert await kernel.invoices.close(org_id, may) == correction
    assert await kernel.invoices.verify() == []


async def test_an_invoice_keeps_its_wording_and_verifies_after_its_plan_is_renamed(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    plan = await save_plan(database, clock())
    march = BillingPeriod.parse("2026-03")
    clock.now = march.start
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan.slug)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.now = march.end + DAY
    invoice = await kernel.invoices.close(org_id, march)
    assert invoice is not None
    assert invoice.lines[0].description == "Custom (v1), 2026-03"
    try:
        await kernel.plans.update(replace(plan, name="Custom, renamed"))
        assert (await kernel.invoices.get(invoice.invoice_id)).lines == invoice.lines
        assert await kernel.invoices.verify() == []
    finally:
        await kernel.plans.deactivate(plan.slug)


async def test_orgs_a_batch_creates_each_start_their_history_when_they_were_created(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_ids = [new_id() for _ in range(3)]
    reports = [UsageReport(org_id, "tokens", 5, "first") for org_id in org_ids]
    await kernel.usage.record_batch(reports)
    for org_id in org_ids:
        assert await history_rows(database, org_id) == 1
        draft = await kernel.invoices.upcoming(org_id)
        assert draft.lines == ()  # in trial from its first event
