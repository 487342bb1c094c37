"""Plans and what each includes of every metric, how its limit is enforced, and what it
charges beyond it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from billing_kernel.errors import InvalidInput, UnknownMetric
from billing_kernel.features.rules import FeatureValue, validate_features
from billing_kernel.metrics.rules import Aggregation
from billing_kernel.pricing.rules import (
    Dimension,
    Price,
    PriceModel,
    Share,
    Tier,
    check_amount,
    check_dimension,
    check_price,
    shares,
)

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
NOT_INCLUDED = Policy(Enforcement.HARD)
"""The policy of a metric a plan does not name: none of it is included, and consumes,
reservations and checks of it are refused (usage reported of it is still counted)."""


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

    `included_quantity` None means unlimited (said explicitly: a metric the plan does not
    name is `not_included`); 0 means nothing is included. The units beyond it are priced
    by `price_model` (`pricing.rules`): per_unit and package at `overage_unit_price` per
    block of `overage_unit_size` units, graduated and volume by `tiers`, each at its unit
    price per `overage_unit_size` units; with a `dimension`, the units of each value it
    lists by that value's price instead (`pricing.rules.shares`). `policy` says whether usage
    may go beyond the included quantity at all.
    """

    metric: str
    included_quantity: int | None
    overage_unit_price: Decimal = Decimal("0")
    overage_unit_size: int = 1
    policy: Policy = SOFT
    """How the limit is enforced (soft unless the operator says otherwise)."""
    price_model: PriceModel = PriceModel.PER_UNIT
    tiers: tuple[Tier, ...] = ()
    """graduated and volume: the tiers, the first from the first unit beyond the included."""
    dimension: Dimension | None = None
    """Prices of their own for some values of an event property (the price above is every
    other value's)."""

    @property
    def price(self) -> Price:
        """How the units beyond the included quantity are priced (pricing.rules)."""
        return Price(self.price_model, self.overage_unit_price, self.overage_unit_size, self.tiers)

    def describe_price(self) -> str:
        """The price in a few words ("0.02 per 1,000"); priced per value, each value's then
        the others' ("by model: gpt-5 0.10 per 1,000; gpt-5-mini 0.02 per 1,000; other
        values 0.05 per 1,000")."""
        if self.dimension is None:
            return self.price.describe()
        values = [f"{p.value} {p.price.describe()}" for p in self.dimension.prices]
        others = f"other values {self.price.describe()}"
        return f"by {self.dimension.property}: {'; '.join([*values, others])}"

    @property
    def is_free(self) -> bool:
        """Whether no usage of the metric costs anything, whatever its values."""
        listed = self.dimension.prices if self.dimension is not None else ()
        return self.price.is_free and all(value.price.is_free for value in listed)

    def shares(
        self, used: int, by_value: Mapping[str, int], included: int | None
    ) -> tuple[Share, ...]:
        """`used` units split as the price splits them, the `included` quantity (the org's
        limit) covering each in turn (`pricing.rules.shares`)."""
        return shares(self.price, self.dimension, used, by_value, included)


@dataclass(frozen=True, slots=True)
class Plan:
    slug: str
    name: str
    currency: str
    monthly_price: Decimal
    is_active: bool = True
    description: str = ""
    metrics: Mapping[str, PlanMetric] = field(default_factory=dict)
    version: int = 1
    """Which of the plan's versions these are: the price and the terms (not the policies)."""
    is_default: bool = False
    """Whether new orgs start on it (one plan at most)."""
    is_public: bool = True
    """Whether it is offered to orgs (the billing page, upgrade offers, a move an org makes
    itself); a private plan is one the operator assigns."""
    features: Mapping[str, FeatureValue] = field(default_factory=dict)
    """What it grants besides quantities (`features.rules`): `{"sso": True}`."""

    def allowance(self, metric: str) -> PlanMetric:
        """The plan's terms for `metric`; a metric the plan does not name is `not_included`."""
        return self.metrics.get(metric) or not_included(metric)


def not_included(metric: str) -> PlanMetric:
    """The terms of a metric a plan does not name: none of it, enforced hard, free. A plan
    gives a metric without limit only by naming it with no included quantity."""
    return PlanMetric(metric=metric, included_quantity=0, policy=NOT_INCLUDED)


def prices_differ(old: Plan, new: Plan) -> bool:
    """Whether `new` charges, includes or grants anything differently from `old`: its price,
    the metrics it names, a metric's included quantity or price (its model, unit price, unit
    size or tiers), or its features. Such a change makes a new version of the plan; a change
    of name, description or enforcement policy does not."""

    def terms(plan: Plan) -> object:
        features = {key: (type(value), value) for key, value in plan.features.items()}
        return (
            plan.monthly_price,
            features,
            {key: (t.included_quantity, t.price, t.dimension) for key, t in plan.metrics.items()},
        )

    return terms(old) != terms(new)


MAX_PLAN_METRICS = 50
MAX_PRICE = Decimal("9999999999.99")
"""The most a plan's monthly price may be (NUMERIC(12,2))."""
CURRENCY_PATTERN = re.compile(r"[A-Z]{3}")


SPLITTABLE = frozenset({Aggregation.SUM, Aggregation.COUNT})
"""The metrics whose usage is the sum of its values' usage, and so may be priced per value."""


def validate_plan(plan: Plan, metrics: Mapping[str, Aggregation]) -> Plan:
    """A plan as an operator defines it, checked whole: a three-letter currency code, a
    price from 0 with at most two decimals, and for each metric of `metrics` (by how each is
    aggregated) it names (each once), the included quantity (None: unlimited), a valid
    price (`pricing.rules.check_price`: `overage_unit_price`, `overage_unit_size`,
    `tiers[1].up_to`), a valid dimension (`check_dimension`; only for a metric in
    SPLITTABLE) and a valid policy; and valid features (`features.rules.
    validate_features`). InvalidInput names the first field that is wrong."""
    if not CURRENCY_PATTERN.fullmatch(plan.currency):
        raise InvalidInput("currency must be a three-letter code such as USD", field="currency")
    check_amount(plan.monthly_price, 2, MAX_PRICE, "monthly_price")
    if len(plan.metrics) > MAX_PLAN_METRICS:
        raise InvalidInput(f"a plan names at most {MAX_PLAN_METRICS} metrics", field="metrics")
    for key, terms in plan.metrics.items():
        if key != terms.metric:
            raise InvalidInput(f"metric {key!r} is named {terms.metric!r}", field="metrics")
        if key not in metrics:
            raise UnknownMetric(f"unknown metric {key!r}", field="metrics")
        if terms.included_quantity is not None and terms.included_quantity < 0:
            raise InvalidInput("included_quantity must not be negative", field="included_quantity")
        check_price(terms.price, "overage_unit_price", "overage_unit_size", "tiers")
        if terms.dimension is not None:
            if metrics[key] not in SPLITTABLE:
                raise InvalidInput(
                    f"metric {key!r} is aggregated by {metrics[key]}: only a sum or a count "
                    "is the sum of its values' usage, so only they may be priced per value",
                    field="dimension",
                )
            check_dimension(terms.dimension)
        validate_grace(terms.policy.grace_percent, terms.policy.grace_period)
    validate_features(plan.features)
    return plan
