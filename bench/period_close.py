"""Closing a month: the time to finalize the invoices of many orgs (`close_due`: each org's
events marked, its lines computed, its invoice numbered and written, one transaction per
org), next to the same month closed by hand with the fewest statements that still mark each
event and number each invoice without gaps (one transaction per org: mark the events and
sum them, take the next number, insert the invoice), in the same run, on PostgreSQL. Then
as many orgs again on a plan whose tokens are priced in graduated tiers, closed next to the
per-unit ones: what tiered prices cost a close; and as many on a plan that also prices
gpt-5 tokens apart (a price per model, the other models in the tiers), their tokens in two
events of two models: what reading each model's usage and a line per model cost a close.

Usage: python bench/period_close.py [--server URL-of-PostgreSQL-server] [--orgs N]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import Dimension, Price, PriceModel, Tier, ValuePrice
from billing_kernel.usage.rules import RecordStatus, UsageReport
from common import fresh_database, migrated, report, row, server_argument

ORGS = 10_000
MONTH = BillingPeriod.parse("2026-09")
BATCH = 1_000


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


TIERED = Plan(
    "starter-tiered",
    "Starter, tiered",
    "USD",
    Decimal("49.00"),
    metrics={
        "tokens": PlanMetric(
            "tokens",
            1_000_000,
            overage_unit_size=1_000,
            price_model=PriceModel.GRADUATED,
            tiers=(Tier(100_000, Decimal("0.02")), Tier(None, Decimal("0.015"), Decimal("1.00"))),
        ),
        "playbook_runs": PlanMetric(
            "playbook_runs", 200, Decimal("5.00"), 100, price_model=PriceModel.PACKAGE
        ),
        "seats": PlanMetric("seats", 3, Decimal("15.00"), 1),
    },
)
"""Starter's terms with its tokens in graduated tiers and its runs in packages."""
PER_MODEL = Plan(
    "starter-per-model",
    "Starter, per model",
    "USD",
    Decimal("49.00"),
    metrics={
        **TIERED.metrics,
        "tokens": PlanMetric(
            "tokens",
            1_000_000,
            overage_unit_size=1_000,
            price_model=PriceModel.GRADUATED,
            tiers=TIERED.metrics["tokens"].tiers,
            dimension=Dimension(
                "model", (ValuePrice("gpt-5", Price(unit_price=Decimal("0.03"), unit_size=1_000)),)
            ),
        ),
    },
)
"""TIERED with gpt-5 tokens priced apart, the other models' in its tiers."""
TOKENS_BY_MODEL = {"gpt-5": 1_100_000, "llama": 134_567}
"""The per-model orgs' tokens: as many as the others', in two events."""


async def seed(
    kernel: Kernel,
    clock: Clock,
    dsn: str,
    prefix: str,
    orgs: int,
    plan: str = "starter",
    *,
    by_model: bool = False,
) -> list[str]:
    """`orgs` orgs, created on the month's first second by their first usage events (two
    each: tokens beyond Starter's, and runs; `by_model`, the tokens in two events of two
    models), on `plan`, and paying from the next second."""
    org_ids = [f"{prefix}-{n:05d}" for n in range(orgs)]
    events: list[tuple[str, int, dict[str, str] | None]] = [("playbook_runs", 7, None)]
    if by_model:
        events += [("tokens", n, {"model": model}) for model, n in TOKENS_BY_MODEL.items()]
    else:
        events.append(("tokens", 1_234_567, None))
    clock.now = MONTH.start
    for start in range(0, orgs, BATCH // 2):
        reports = [
            UsageReport(org_id, metric, quantity, f"{metric}-{n}", MONTH.start, properties)
            for org_id in org_ids[start : start + BATCH // 2]
            for n, (metric, quantity, properties) in enumerate(events)
        ]
        result = await kernel.usage.record_batch(reports)
        assert result.count(RecordStatus.ACCEPTED) == len(reports)
    conn = await asyncpg.connect(dsn)
    try:  # setup, not measured: paying on Starter from the month's second second
        await conn.execute(
            "UPDATE org_billing_state SET plan_slug = $2, plan_version = 1, status = 'active' "
            "WHERE org_id LIKE $1",
            f"{prefix}-%",
            plan,
        )
        await conn.execute(
            "INSERT INTO subscription_history (org_id, valid_from, plan_slug, plan_version, "
            "status) SELECT org_id, $2, $3, 1, 'active' FROM org_billing_state "
            "WHERE org_id LIKE $1 ORDER BY org_id",
            f"{prefix}-%",
            MONTH.start + timedelta(seconds=1),
            plan,
        )
    finally:
        await conn.close()
    return org_ids


async def close_by_hand(dsn: str, org_ids: list[str]) -> float:
    """The baseline: seconds to close the month of `org_ids` by hand."""
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        for org_id in org_ids:
            async with conn.transaction():
                invoice_id = f"inv_{uuid.uuid4().hex[:24]}"
                marked = await conn.fetch(
                    "UPDATE usage_lines SET invoice_id = $1 WHERE org_id = $2 "
                    "AND invoice_id IS NULL AND period_start <= $3 RETURNING metric, quantity",
                    invoice_id,
                    org_id,
                    MONTH.key,
                )
                over = sum(r["quantity"] for r in marked if r["metric"] == "tokens") - 1_000_000
                total = Decimal("49.00") + round(Decimal(max(over, 0)) * Decimal("0.02") / 1000, 2)
                number = await conn.fetchval(
                    "UPDATE invoice_numbers SET last_number = last_number + 1 "
                    "WHERE counter = 'invoices' RETURNING last_number"
                )
                await conn.execute(
                    "INSERT INTO invoices (invoice_id, org_id, period_start, number, status, "
                    "currency, subtotal, total, plan_slug, plan_version, bills_usage, sequence, "
                    "issued_at) VALUES ($1, $2, $3, $4, 'open', 'USD', $5, $5, 'starter', 1, "
                    "true, $6, now())",
                    invoice_id,
                    org_id,
                    MONTH.key,
                    f"RAW-{number:06d}",
                    total,
                    number,
                )
    finally:
        await conn.close()
    return time.perf_counter() - started


async def close_due(kernel: Kernel, clock: Clock, orgs: int, total: str) -> float:
    """Seconds `close_due` takes once the month has closed, to close `orgs` orgs' month,
    each invoiced `total`."""
    clock.now = MONTH.end + timedelta(days=1, minutes=1)
    started = time.perf_counter()
    closed = await kernel.invoices.close_due()
    elapsed = time.perf_counter() - started
    assert len(closed.closed) == orgs, (len(closed.closed), orgs)
    assert {str(invoice.total) for invoice in closed.closed} == {total}
    return elapsed


async def measure(dsn: str, orgs: int) -> list[dict[str, Any]]:
    await asyncio.to_thread(migrated, dsn)
    database = Database(dsn)
    clock = Clock(MONTH.start)
    kernel = Kernel(database, Settings(database_url=dsn), clock=clock)
    try:
        by_hand = await seed(kernel, clock, dsn, "close-raw", orgs)
        kernels = await seed(kernel, clock, dsn, "close-kernel", orgs)
        baseline = await close_by_hand(dsn, by_hand)
        elapsed = await close_due(kernel, clock, len(kernels), "53.69")  # 4.69 tokens, 0 runs
        await kernel.plans.create(TIERED)
        await seed(kernel, clock, dsn, "close-tiered", orgs, TIERED.slug)
        # 100,000 x 0.02 / 1,000 + 134,567 x 0.015 / 1,000 + 1.00 = 5.018505; runs within
        tiered = await close_due(kernel, clock, orgs, "54.02")
        await kernel.plans.create(PER_MODEL)
        await seed(kernel, clock, dsn, "close-per-model", orgs, PER_MODEL.slug, by_model=True)
        # gpt-5: 100,000 over the 1,000,000 included, 3.00; llama: 134,567 in the tiers,
        # 100,000 x 0.02 / 1,000 + 34,567 x 0.015 / 1,000 + 1.00 = 3.518505
        per_model = await close_due(kernel, clock, orgs, "55.52")
    finally:
        await database.dispose()
    setup = {
        "orgs": orgs,
        "events": 2 * orgs,
        "database": "PostgreSQL",
        "kernel": "InvoiceService.close_due: per org one transaction (lock the org, read its "
        "history and plans, mark and sum its events, seats, limits, number, write the "
        "invoice, its lines and its usage)",
        "baseline": "asyncpg by hand, per org one transaction: mark and sum its events, take "
        "the next number, insert the invoice",
    }
    return [
        row(f"close a month of {orgs:,} orgs (PostgreSQL)", "s", elapsed, baseline, setup),
        row(
            f"close a month, per org (PostgreSQL, {orgs:,} orgs)",
            "ms",
            elapsed / orgs * 1000,
            baseline / orgs * 1000,
            setup,
        ),
        row(
            f"close a month on tiered prices, per org (PostgreSQL, {orgs:,} orgs)",
            "ms",
            tiered / orgs * 1000,
            elapsed / orgs * 1000,
            setup
            | {
                "kernel": "close_due as above, the orgs on Starter's terms with tokens in "
                "graduated tiers and runs in packages",
                "baseline": "close_due of the orgs on Starter (per unit), in the same run, "
                "closed before them",
            },
        ),
        row(
            f"close a month on tiered and per-model prices, per org (PostgreSQL, {orgs:,} orgs)",
            "ms",
            per_model / orgs * 1000,
            elapsed / orgs * 1000,
            setup
            | {
                "events": 3 * orgs,
                "kernel": "close_due as above, the orgs on the tiered terms with gpt-5 tokens "
                "priced apart, each org's tokens in two events (gpt-5 and another model)",
                "baseline": "close_due of the orgs on Starter (per unit, one tokens event), in "
                "the same run, closed before them",
            },
        ),
    ]


def collect(dsn: str, orgs: int = ORGS) -> list[dict[str, Any]]:
    """The rows; `dsn` names a PostgreSQL database this may migrate and write to."""
    return asyncio.run(measure(dsn, orgs))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    server_argument(parser)
    parser.add_argument("--orgs", type=int, default=ORGS)
    args = parser.parse_args()
    report(collect(asyncio.run(fresh_database(args.server)), args.orgs))
