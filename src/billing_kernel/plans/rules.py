"""Plans and what each includes of every metric, how its limit is enforced, and what it
charges beyond it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from billing_kernel.errors import InvalidInput

MAX_GRACE_PERCENT = 1000
HOUR = timedelta(hours=1)
MAX_GRACE_PERIOD = timedelta(days=31)


class Enforcement(StrEnum):
    SOFT = "soft"
    """Usage beyond the limit is reported and allowed (and may be billed as overage)."""
    HARD = "hard"
    """Usage may not go beyond the limit, except by the policy's grace."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How one metric's limit is enforced."""

    mode: Enforcement = Enforcement.SOFT
    grace_percent: int = 0
    """Hard: how far beyond the limit usage may go, as a whole percentage of the limit."""
    grace_period: timedelta | None = None
    """Hard: how long usage may go on beyond the limit once it first went beyond it in the
    period (within `grace_percent`, if that is set); None: no time limit on the grace."""

    @property
    def has_grace(self) -> bool:
        return self.grace_percent > 0 or self.grace_period is not None

    def describe(self) -> str:
        """In a few words: "soft", "hard", "hard, 10 % grace", "hard, 72 h grace",
        "hard, 10 % grace for 72 h"."""
        if self.mode is Enforcement.SOFT:
            return "soft"
        return f"hard, {self.grace_text()}" if self.has_grace else "hard"

    def grace_text(self) -> str:
        """The grace in a few words ("10 % grace", "72 h grace", "10 % grace for 72 h"), or
        "" when there is none."""
        hours = None if self.grace_period is None else self.grace_period // HOUR
        if self.grace_percent and hours is not None:
            return f"{self.grace_percent} % grace for {hours} h"
        if self.grace_percent:
            return f"{self.grace_percent} % grace"
        return "" if hours is None else f"{hours} h grace"


SOFT = Policy()


def validate_grace(grace_percent: object, grace_period: object) -> None:
    """A grace allowance of 0 to MAX_GRACE_PERCENT whole percent, and a grace period of whole
    hours, from one to MAX_GRACE_PERIOD (or None); InvalidInput names the field."""
    if (
        not isinstance(grace_percent, int)
        or isinstance(grace_percent, bool)
        or not 0 <= grace_percent <= MAX_GRACE_PERCENT
    ):
        raise InvalidInput(
            f"grace_percent must be a whole number from 0 to {MAX_GRACE_PERCENT}",
            field="grace_percent",
        )
    if grace_period is not None and (
        not isinstance(grace_period, timedelta)
        or not HOUR <= grace_period <= MAX_GRACE_PERIOD
        or grace_period % HOUR
    ):
        raise InvalidInput(
            f"grace_period_hours must be a whole number from 1 to {MAX_GRACE_PERIOD // HOUR}",
            field="grace_period_hours",
        )


@dataclass(frozen=True, slots=True)
class PlanMetric:
    """What a plan includes of one metric, and what it charges beyond that.

    `included_quantity` None means unlimited; 0 means nothing is included. Overage costs
    `overage_unit_price` per block of `overage_unit_size` units; `policy` says whether usage
    may go beyond the included quantity at all.
    """

    metric: str
    included_quantity: int | None
    overage_unit_price: Decimal = Decimal("0")
    overage_unit_size: int = 1
    policy: Policy = SOFT
    """How the limit is enforced (soft unless the operator says otherwise)."""


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
