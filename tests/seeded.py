"""The demo catalogue's plans (`billing_kernel.demo`), as the pure rules see them."""

from decimal import Decimal

from billing_kernel.demo import GROWTH_TOKENS
from billing_kernel.plans.rules import Plan, PlanMetric

STARTER = Plan(
    slug="starter",
    name="Starter",
    currency="USD",
    monthly_price=Decimal("49.00"),
    metrics={
        "tokens": PlanMetric("tokens", 1_000_000, Decimal("0.02"), 1_000),
        "playbook_runs": PlanMetric("playbook_runs", 200, Decimal("0.25"), 1),
        "seats": PlanMetric("seats", 3, Decimal("15.00"), 1),
    },
)
GROWTH = Plan(
    slug="growth",
    name="Growth",
    currency="USD",
    monthly_price=Decimal("199.00"),
    metrics={
        "tokens": GROWTH_TOKENS,
        "playbook_runs": PlanMetric("playbook_runs", 1_000, Decimal("0.20"), 1),
        "seats": PlanMetric("seats", 10, Decimal("12.00"), 1),
    },
)
