"""The demo org `make run` shows: three members, a paying subscription and a working month
of usage, seeded idempotently (a second run on the same day adds nothing)."""

from __future__ import annotations

from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
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
    """Create the demo org on the starter plan, paying (`active`) since the first of this
    month, with its members and a day's usage for each day of this month up to `now`;
    returns its summary."""
    month_start = BillingPeriod.containing(now).start
    subscribed = Kernel(kernel.database, kernel.settings, clock=lambda: month_start)
    await subscribed.orgs.create(
        DEMO_ORG, name="Demo Org", plan_slug="starter", created_via=OrgOrigin.CLI
    )
    await subscribed.orgs.set_status(DEMO_ORG, BillingStatus.ACTIVE)
    for user_id, role in DEMO_MEMBERS:
        await kernel.members.add(DEMO_ORG, user_id, role)
    for day in range(1, now.day + 1):
        at = now.replace(day=day, hour=12, minute=0, second=0, microsecond=0)
        weekday = at.weekday() < 5
        usage = {
            "tokens": (40_000 if weekday else 9_000) + 1_500 * (day % 7),
            "playbook_runs": (9 if weekday else 2) + day % 3,
        }
        for metric, quantity in usage.items():
            await kernel.usage.record(
                DEMO_ORG,
                metric,
                quantity,
                idempotency_key=f"demo-{at:%Y-%m-%d}-{metric}",
                occurred_at=min(at, now),
            )
    return await kernel.summary.summary(DEMO_ORG)
