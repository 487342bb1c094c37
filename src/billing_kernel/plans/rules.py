"""Plans and what each includes of every metric, and charges beyond it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class PlanMetric:
    """What a plan includes of one metric, and what it charges beyond that.

    `included_quantity` None means unlimited; 0 means nothing is included. Overage costs
    `overage_unit_price` per block of `overage_unit_size` units.
    """

    metric: str
    included_quantity: int | None
    overage_unit_price: Decimal = Decimal("0")
    overage_unit_size: int = 1


@dataclass(frozen=True, slots=True)
class Plan:
    slug: str
    name: str
    currency: str
    monthly_price: Decimal
    is_active: bool = True
    description: str = ""
    metrics: Mapping[str, PlanMetric] = field(default_factory=dict)

    def allowance(self, metric: str) -> PlanMetric:
        """The plan's terms for `metric`; a metric the plan does not name is unlimited and free."""
        return self.metrics.get(metric) or PlanMetric(metric=metric, included_quantity=None)
