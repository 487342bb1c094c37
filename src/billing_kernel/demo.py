"""What `make run` shows, seeded idempotently (a second run on the same day adds nothing):
the demo catalogue (three metrics and four plans, Enterprise's tokens priced in graduated
tiers, each plan with features; never part of the schema, so a deployment offers only the
plans its operator creates), and the demo org: three members, a paying subscription, two
months of usage and last month's invoice."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import PlanNotFound
from billing_kernel.invoices.rules import closes_at
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.metrics.rules import Aggregation, Metric
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import Dimension, Price, PriceModel, Tier, ValuePrice
from billing_kernel.summary.rules import OrgBillingSummary

DEMO_ORG = "demo-org"
DEMO_OWNER = "demo-owner"
DEMO_MEMBERS = (
    (DEMO_OWNER, MemberRole.OWNER),
    ("demo-admin", MemberRole.ADMIN),
    ("demo-member", MemberRole.MEMBER),
)

DEMO_METRICS = (  # billed: an event without its amount is refused, never dropped
    Metric("tokens", "LLM tokens", "tokens", required=True),
    Metric("playbook_runs", "Playbook runs", "runs", required=True),
    Metric("seats", "Seats", "seats", Aggregation.SEATS),
)
ENTERPRISE_TOKENS = PlanMetric(
    "tokens",
    20_000_000,
    overage_unit_size=1000,
    price_model=PriceModel.GRADUATED,
    tiers=(Tier(80_000_000, Decimal("0.01")), Tier(None, Decimal("0.008"))),
)
"""The demo's tiered metric: beyond 20 M tokens, 0.01 per 1,000 for the next 80 M, then 0.008."""
GROWTH_TOKENS = PlanMetric(
    "tokens",
    5_000_000,
    Decimal("0.015"),
    1000,
    dimension=Dimension(
        "model",
        (
            ValuePrice("gpt-5", Price(unit_price=Decimal("0.03"), unit_size=1000)),
            ValuePrice("gpt-5-mini", Price(unit_price=Decimal("0.005"), unit_size=1000)),
        ),
    ),
)
"""The demo's price per model: beyond 5 M tokens (covering gpt-5's first, then gpt-5-mini's,
then the rest), gpt-5 at 0.03 per 1,000, gpt-5-mini at 0.005, any other model at 0.015."""

# slug, name, monthly price, {metric: (included, overage unit price, overage unit size), or
# the metric's terms whole}
DEMO_PLANS: tuple[tuple[str, str, str, dict[str, tuple[int, str, int] | PlanMetric]], ...] = (
    (
        "internal-dev",
        "Internal (dev)",
        "0.00",
        {
            "tokens": (10_000_000, "0", 1000),
            "playbook_runs": (10_000, "0", 1),
            "seats": (100, "0", 1),
        },
    ),
    (
        "starter",
        "Starter",
        "49.00",
        {
            "tokens": (1_000_000, "0.02", 1000),
            "playbook_runs": (200, "0.25", 1),
            "seats": (3, "15.00", 1),
        },
    ),
    (
        "growth",
        "Growth",
        "199.00",
        {
            "tokens": GROWTH_TOKENS,
            "playbook_runs": (1_000, "0.20", 1),
            "seats": (10, "12.00", 1),
        },
    ),
    (
        "enterprise",
        "Enterprise",
        "599.00",
        {
            "tokens": ENTERPRISE_TOKENS,
            "playbook_runs": (5_000, "0.15", 1),
            "seats": (50, "10.00", 1),
        },
    ),
)
DEMO_DEFAULT_PLAN = "internal-dev"
DEMO_FEATURES: dict[str, dict[str, bool | int | str]] = {
    "internal-dev": {"sso": True, "max_projects": 100, "support": "community"},
    "starter": {"sso": False, "max_projects": 3, "support": "email"},
    "growth": {"sso": False, "max_projects": 20, "support": "priority"},
    "enterprise": {"sso": True, "max_projects": 1000, "support": "dedicated"},
}
"""What each demo plan grants besides quantities (features.rules)."""


def _terms(metric: str, given: tuple[int, str, int] | PlanMetric) -> PlanMetric:
    if isinstance(given, PlanMetric):
        return given
    included, unit_price, unit_size = given
    return PlanMetric(metric, included, Decimal(unit_price), unit_size)


async def seed_catalogue(kernel: Kernel) -> str:
    """Define the demo's metrics and offer its plans, those not there yet (a metric or plan
    already there is left as it is), with internal-dev, a private plan (assigned, never
    offered), as the default if no plan is. Returns the default plan's slug."""
    catalogue = await kernel.metrics.by_key()
    for metric in DEMO_METRICS:
        if metric.key not in catalogue:
            await kernel.metrics.define(metric)
    for slug, name, price, terms in DEMO_PLANS:
        try:
            await kernel.plans.get(slug)
        except PlanNotFound:
            plan = Plan(
                slug=slug,
                name=name,
                currency="USD",
                monthly_price=Decimal(price),
                metrics={key: _terms(key, given) for key, given in terms.items()},
                features=DEMO_FEATURES[slug],
            )
            await kernel.plans.create(replace(plan, is_public=slug != DEMO_DEFAULT_PLAN))
    for plan in await kernel.plans.list_active():
        if plan.is_default:
            return plan.slug
    return (await kernel.plans.set_default(DEMO_DEFAULT_PLAN)).slug


async def seed_demo(kernel: Kernel, now: datetime) -> OrgBillingSummary:
    """Seed the demo catalogue (`seed_catalogue`); create the demo org on the starter plan,
    paying (`active`) since the first of last month, with its members and a day's usage for
    each day from then up to `now`, and last month's invoice once that month has closed;
    returns its summary."""
    await seed_catalogue(kernel)
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
