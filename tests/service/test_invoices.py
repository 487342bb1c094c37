"""The upcoming invoice through the services, on both databases: the subscription history
each change of plan or status writes, billed to the second."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing_kernel.db.database import Database
from billing_kernel.db.tables import subscription_history
from billing_kernel.invoices.rules import LineKind
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock, new_id

pytestmark = pytest.mark.anyio


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
    await kernel.orgs.set_status(org_id, BillingStatus.ACTIVE)
    await kernel.usage.record(org_id, "tokens", 1_500_000, idempotency_key=new_id("e"))
    paying = await kernel.invoices.upcoming(org_id)
    assert [(line.kind, str(line.amount)) for line in paying.lines] == [
        (LineKind.PRORATION_CHARGE, "33.19"),  # 49.00 x 21 / 31 days
        (LineKind.OVERAGE, "10.00"),  # 500,000 tokens over, 0.02 per 1,000
    ]

    clock.advance(days=10)
    await kernel.orgs.set_plan(org_id, "growth")
    await kernel.orgs.set_status(org_id, BillingStatus.ACTIVE)  # no change: nothing written
    upgraded = await kernel.invoices.upcoming(org_id)
    assert [(line.kind, line.plan_slug, str(line.amount)) for line in upgraded.lines] == [
        (LineKind.PRORATION_CHARGE, "starter", "33.19"),
        (LineKind.PRORATION_CREDIT, "starter", "-17.39"),  # 49.00 x 11 / 31 days
        (LineKind.PRORATION_CHARGE, "growth", "70.61"),  # 199.00 x 11 / 31 days
    ]  # the month's usage is priced by growth, which includes 5,000,000 tokens
    assert upgraded.total == Decimal("86.41")
    assert await history_rows(database, org_id) == 3
    assert await kernel.invoices.upcoming(org_id) == upgraded  # recomputed, the same
