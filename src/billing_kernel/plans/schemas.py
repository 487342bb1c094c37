"""Plans as the API shows them."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr, WithJsonSchema

from billing_kernel.common.validation import (
    ID_PATTERN_TEXT,
    MAX_EVENT_QUANTITY,
    PROPERTY_NAME_PATTERN,
)
from billing_kernel.errors import InvalidInput
from billing_kernel.features.rules import FEATURE_KEY_PATTERN, MAX_TEXT
from billing_kernel.metrics.rules import METRIC_KEY_PATTERN_TEXT
from billing_kernel.plans.rules import (
    HOUR,
    MAX_GRACE_PERCENT,
    MAX_GRACE_PERIOD,
    MAX_PLAN_METRICS,
    SOFT,
    Enforcement,
    Plan,
    PlanMetric,
    Policy,
)
from billing_kernel.pricing.rules import (
    MAX_DIMENSION_PRICES,
    MAX_TIERS,
    MAX_UNIT_SIZE,
    MAX_UP_TO,
    MAX_VALUE_LENGTH,
    Dimension,
    Price,
    PriceModel,
    Tier,
    ValuePrice,
)
from billing_kernel.web.schemas import (
    WHOLE,
    MoneyText,
    Slug,
    StrictBody,
    Text,
)

MAX_GRACE_HOURS = MAX_GRACE_PERIOD // HOUR

GracePercent = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_GRACE_PERCENT,
        description="Hard limits: how far beyond the limit usage may go, in whole percent of "
        "the limit (10: a 1,000 limit lets usage reach 1,100).",
    ),
    WHOLE,
]
GraceHours = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_GRACE_HOURS,
        description="Hard limits: how long usage may go on beyond the limit, in hours from the "
        "moment it first went beyond it in the month (within `grace_percent`, if set).",
    ),
    WHOLE,
]


class PolicyOut(BaseModel):
    """How a limit is enforced."""

    mode: Enforcement = Field(
        description="`soft`: usage beyond the limit is allowed (and billed as overage). "
        "`hard`: usage beyond the limit is refused, after any grace."
    )
    grace_percent: int = Field(description="Hard: the allowance beyond the limit, in percent.")
    grace_period_hours: int | None = Field(
        description="Hard: how long usage may go on beyond the limit from when it first did; "
        "null: no time limit (the percent allowance holds all month)."
    )

    @classmethod
    def of(cls, policy: Policy) -> PolicyOut:
        period = policy.grace_period
        return cls(
            mode=policy.mode,
            grace_percent=policy.grace_percent,
            grace_period_hours=None if period is None else period // HOUR,
        )


class PolicyIn(StrictBody):
    mode: Enforcement = Field(examples=["hard"])
    grace_percent: GracePercent = 0
    grace_period_hours: GraceHours | None = Field(default=None, examples=[72])

    def policy(self) -> Policy:
        hours = self.grace_period_hours
        return Policy(self.mode, self.grace_percent, None if hours is None else hours * HOUR)


FeatureKeyText = Annotated[
    str, WithJsonSchema({"type": "string", "pattern": f"^{FEATURE_KEY_PATTERN.pattern}$"})
]
FeatureValueType = (
    StrictBool
    | StrictInt
    | Annotated[
        StrictStr,
        WithJsonSchema(
            {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": ID_PATTERN_TEXT}
        ),
    ]
)
"""A feature's key and value as a body gives them: the schema states what
`features.rules.check_key` and `check_value` take, and they judge it, naming the feature."""


PriceText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,10}(\.[0-9]{1,2})?$",
        description='A decimal amount as a string, at most two decimals: "49.00".',
        examples=["49.00"],
    ),
]
UnitPriceText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,6})?$",
        description='A decimal amount as a string, at most six decimals: "0.015".',
        examples=["0.02"],
    ),
]


PRICE_MODEL_TEXT = (
    "How the units beyond those included are priced (docs/pricing.md): `per_unit`: "
    "`overage_unit_price` per `overage_unit_size` units, a partial block charged "
    "proportionally; `package`: the same, a partial block charged whole; `graduated`: each "
    "unit at the price of the tier it falls in; `volume`: every unit at the price of the "
    "tier the whole quantity reaches. Tiers count from the first unit beyond those included."
)


class TierIn(StrictBody):
    up_to: Annotated[int, Field(ge=1, lt=MAX_UP_TO), WHOLE] | None = Field(
        description="The last unit beyond those included that the tier prices; null for the "
        "last tier, which prices every unit after the tier before it.",
        examples=[100_000],
    )
    unit_price: UnitPriceText = Field(
        description="The price per `overage_unit_size` units in the tier, a partial block "
        "charged proportionally."
    )
    flat_fee: PriceText = Field(
        default="0",
        description="Charged once when usage reaches the tier (graduated: each tier reached; "
        "volume: the tier the whole quantity reaches).",
    )

    def tier(self) -> Tier:
        return Tier(self.up_to, Decimal(self.unit_price), Decimal(self.flat_fee))


class PriceIn(StrictBody):
    price_model: PriceModel = Field(default=PriceModel.PER_UNIT, description=PRICE_MODEL_TEXT)
    overage_unit_price: UnitPriceText = Field(
        default="0",
        description="`per_unit` and `package`: the price of each block of `overage_unit_size` "
        "beyond it. `graduated` and `volume` price by `tiers`, and leave it 0.",
    )
    overage_unit_size: Annotated[int, Field(ge=1, le=MAX_UNIT_SIZE), WHOLE] = Field(
        default=1,
        examples=[1000],
        description="The units a unit price is for (the tiers' too): 1000 prices per thousand.",
    )
    tiers: list[TierIn] | None = Field(
        default=None,
        max_length=MAX_TIERS,
        description="`graduated` and `volume` only: the tiers in order, each ending above the "
        "one before, the last with `up_to: null`. A wrong tier is refused naming it "
        "(`tiers[1].up_to`).",
    )

    def price(self) -> Price:
        return Price(
            self.price_model,
            Decimal(self.overage_unit_price),
            self.overage_unit_size,
            tuple(t.tier() for t in self.tiers or ()),
        )


class ValuePriceIn(PriceIn):
    value: Annotated[
        str, Field(min_length=1, max_length=MAX_VALUE_LENGTH, pattern=ID_PATTERN_TEXT)
    ] = Field(
        description="The property's value as text (a number as JSON writes it: `5`).",
        examples=["gpt-5"],
    )

    def value_price(self) -> ValuePrice:
        return ValuePrice(self.value, self.price())


DIMENSION_TEXT = (
    "Prices of their own for some values of one event property (`model`: gpt-5 at one "
    "price, a small model at another); every other value, and an event without the property, "
    "is priced by the metric's own price. Each value is its own invoice line. The included "
    "quantity is the metric's, shared: it covers the values in the order listed, then the "
    "others (docs/pricing.md#prices-per-dimension). Only for a metric that sums or counts."
)


class DimensionIn(StrictBody):
    property: Annotated[str, Field(pattern=PROPERTY_NAME_PATTERN.pattern)] = Field(
        description="The event property whose values are priced apart.", examples=["model"]
    )
    prices: list[ValuePriceIn] = Field(
        min_length=1,
        max_length=MAX_DIMENSION_PRICES,
        description="Each value with its price, once each, in the order the included "
        "quantity covers them.",
    )

    def dimension(self) -> Dimension:
        return Dimension(self.property, tuple(p.value_price() for p in self.prices))


class PlanTermsIn(PriceIn):
    metric: str = Field(examples=["tokens"], pattern=METRIC_KEY_PATTERN_TEXT)
    included_quantity: Annotated[int, Field(ge=0, le=MAX_EVENT_QUANTITY), WHOLE] | None = Field(
        description="Included per month; null: unlimited.", examples=[1_000_000]
    )
    dimension: DimensionIn | None = Field(default=None, description=DIMENSION_TEXT)
    policy: PolicyIn | None = Field(default=None, description="Left out: soft.")

    def terms(self) -> PlanMetric:
        price = self.price()
        return PlanMetric(
            metric=self.metric,
            included_quantity=self.included_quantity,
            overage_unit_price=price.unit_price,
            overage_unit_size=price.unit_size,
            policy=SOFT if self.policy is None else self.policy.policy(),
            price_model=price.model,
            tiers=price.tiers,
            dimension=None if self.dimension is None else self.dimension.dimension(),
        )


class PlanBody(StrictBody):
    """A plan's terms, whole: what `createPlan` offers and `updatePlan` changes to."""

    name: Annotated[Text, Field(min_length=1, max_length=128)] = Field(examples=["Team"])
    description: Annotated[Text, Field(max_length=2000)] = ""
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", examples=["USD"])]
    monthly_price: PriceText
    public: StrictBool | None = Field(
        default=None,
        description="Offered to orgs: on the billing page, in upgrade offers, a move an org's "
        "admins may make. False: a private plan, which only a service key assigns (`putOrg`, "
        "`changeOrgPlan`). Left out: true for a new plan; an update keeps what the plan is.",
    )
    metrics: list[PlanTermsIn] = Field(
        default_factory=list,
        max_length=MAX_PLAN_METRICS,
        description="What the plan includes of each metric, once each; a metric left out gives "
        "none of it (consumes and checks of it refused); `included_quantity: null` makes "
        "one unlimited.",
    )

    features: dict[FeatureKeyText, FeatureValueType] = Field(
        default_factory=dict,
        description="What the plan grants besides quantities, by key (as a metric's): a "
        'switch, a whole number or a short text: `{"sso": true, "max_projects": 5, '
        '"support": "priority"}`. A feature left out is not granted. At most 50; a text at '
        "most 200 characters. Orgs read theirs with `getOrgEntitlements`.",
        examples=[{"sso": True, "max_projects": 5}],
    )

    def plan_named(self, slug: str) -> Plan:
        terms = [t.terms() for t in self.metrics]
        named = {t.metric: t for t in terms}
        if len(named) < len(terms):
            raise InvalidInput("each metric is named once", field="metrics")
        return Plan(
            slug=slug,
            name=self.name,
            description=self.description,
            currency=self.currency,
            monthly_price=Decimal(self.monthly_price),
            metrics=named,
            is_public=self.public is not False,
            features=dict(self.features),
        )


class PlanIn(PlanBody):
    slug: Slug = Field(examples=["team"])
    default: StrictBool = Field(
        default=False,
        description="Make it the plan new orgs start on (the one that was stays offered).",
    )

    def plan(self) -> Plan:
        return self.plan_named(self.slug)


class TierOut(BaseModel):
    up_to: int | None = Field(
        description="The last unit beyond those included the tier prices; null: the last tier."
    )
    unit_price: MoneyText = Field(description="Per `overage_unit_size` units.")
    flat_fee: MoneyText = Field(description="Charged once when usage reaches the tier.")


class PriceOut(BaseModel):
    price_model: PriceModel = Field(description=PRICE_MODEL_TEXT)
    overage_unit_price: MoneyText = Field(
        description="`per_unit` and `package`: the price per `overage_unit_size` units (0 for "
        "the tiered models: their tiers say)."
    )
    overage_unit_size: int = Field(description="Units a unit price is for, e.g. 1000.")
    tiers: list[TierOut] = Field(description="`graduated` and `volume`: the tiers; else none.")

    @staticmethod
    def parts(price: Price) -> dict[str, object]:
        return {
            "price_model": price.model,
            "overage_unit_price": price.unit_price,
            "overage_unit_size": price.unit_size,
            "tiers": [
                TierOut(up_to=t.up_to, unit_price=t.unit_price, flat_fee=t.flat_fee)
                for t in price.tiers
            ],
        }


class ValuePriceOut(PriceOut):
    value: str = Field(description="The property's value as text, priced by this price.")


class DimensionOut(BaseModel):
    property: str = Field(description="The event property whose values are priced apart.")
    prices: list[ValuePriceOut] = Field(
        description="Each value with its price, in the order the included quantity covers "
        "them; every other value is priced by the metric's own price."
    )


class PlanTermsOut(PriceOut):
    metric: str
    included_quantity: int | None = Field(description="Included per month; null: unlimited.")
    dimension: DimensionOut | None = Field(description=DIMENSION_TEXT)
    policy: PolicyOut

    @classmethod
    def of(cls, terms: PlanMetric) -> PlanTermsOut:
        dimension = terms.dimension
        return cls.model_validate(
            {
                "metric": terms.metric,
                "included_quantity": terms.included_quantity,
                **cls.parts(terms.price),
                "dimension": None
                if dimension is None
                else DimensionOut(
                    property=dimension.property,
                    prices=[
                        ValuePriceOut.model_validate({"value": p.value, **cls.parts(p.price)})
                        for p in dimension.prices
                    ],
                ),
                "policy": PolicyOut.of(terms.policy),
            }
        )


class PlanOut(BaseModel):
    slug: str
    name: str
    description: str
    currency: str
    monthly_price: MoneyText
    is_active: bool
    is_default: bool = Field(description="Whether new orgs start on it (one plan at most).")
    is_public: bool = Field(description="Whether it is offered to orgs (false: private).")
    version: int = Field(
        description="The version of the plan's price and terms: a change of them makes a new "
        "one, for new subscribers; an org keeps its version until it changes plan."
    )
    metrics: list[PlanTermsOut]
    features: dict[str, bool | int | str] = Field(
        description="What the plan grants besides quantities, by key (none: {})."
    )

    @classmethod
    def of(cls, plan: Plan) -> PlanOut:
        terms = [PlanTermsOut.of(t) for t in plan.metrics.values()]
        return cls(
            slug=plan.slug,
            name=plan.name,
            description=plan.description,
            currency=plan.currency,
            monthly_price=plan.monthly_price,
            is_active=plan.is_active,
            is_default=plan.is_default,
            is_public=plan.is_public,
            version=plan.version,
            metrics=terms,
            features=dict(sorted(plan.features.items())),
        )


class PlansOut(BaseModel):
    plans: list[PlanOut]
