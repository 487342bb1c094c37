"""The demo org `make run` shows: three members, a paying subscription, two months of usage
and last month's invoice, seeded idempotently (a second run on the same day adds
nothing)."""

from __future__ import annotations

from datetime import datetime, timedelta

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.invoices.rules import closes_at
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin
from billing_kernel.summary.rules import OrgBillingSummary

DEMO_ORG = "demo-org"
DEMO_OWNER = "demo-owner"
DEMO_MEMBERS = (
    (DEMO_OWNER, MemberRole.OWNER),
    ("demo-admin", MemberRole.ADMIN),
    ("demo-member", MemberRole.MEMBER),
)


async def seed_demo(kernel: Kernel, now: datetime) -> OrgBillingSummary:
    """Create the demo org on the starter plan, paying (`active`) since the first of last
    month, with its members and a day's usage for each day from then up to `now`, and
    last month's invoice once that month has closed; returns its summary."""
    first = BillingPeriod.containing(now).previous()
    moment = [first.start]  # the demo's own clock, moved along its history
    then = Kernel(kernel.database, kernel.settings, clock=lambda: moment[0])
    await then.orgs.create(
        DEMO_ORG, name="Demo Org", plan_slug="starter", created_via=OrgOrigin.CLI
    )
    await then.subscriptions.set_status(DEMO_ORG, BillingStatus.ACTIVE)
    for user_id, role in DEMO_MEMBERS:
        await then.members.add(DEMO_ORG, user_id, role)
    day = first.start.replace(hour=12)
    while day <= now:
        moment[0] = day
        weekday = day.weekday() < 5
        usage = {
            "tokens": (40_000 if weekday else 9_000) + 1_500 * (day.day % 7),
            "playbook_runs": (9 if weekday else 2) + day.day % 3,
        }
        for metric, quantity in usage.items():
            await then.usage.record(
                DEMO_ORG, metric, quantity, idempotency_key=f"demo-{day:%Y-%m-%d}-{metric}"
            )
        day += timedelta(days=1)
    if closes_at(first, kernel.invoices.grace) <= now:
        await kernel.invoices.close(DEMO_ORG, first)
    return await kernel.summary.summary(DEMO_ORG)
