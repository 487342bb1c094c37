"""Plans as the API shows them."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.plans.rules import (
    HOUR,
    MAX_GRACE_PERCENT,
    MAX_GRACE_PERIOD,
    Enforcement,
    Plan,
    PlanMetric,
    Policy,
)
from billing_kernel.web.schemas import (
    WHOLE,
    MoneyText,
    StrictBody,
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


class PlanTermsOut(BaseModel):
    metric: str
    included_quantity: int | None = Field(description="Included per month; null: unlimited.")
    overage_unit_price: MoneyText
    overage_unit_size: int = Field(description="Units the overage price is for, e.g. 1000.")
    policy: PolicyOut

    @classmethod
    def of(cls, terms: PlanMetric) -> PlanTermsOut:
        return cls(
            metric=terms.metric,
            included_quantity=terms.included_quantity,
            overage_unit_price=terms.overage_unit_price,
            overage_unit_size=terms.overage_unit_size,
            policy=PolicyOut.of(terms.policy),
        )


class PlanOut(BaseModel):
    slug: str
    name: str
    description: str
    currency: str
    monthly_price: MoneyText
    is_active: bool
    metrics: list[PlanTermsOut]

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
            metrics=terms,
        )


class PlansOut(BaseModel):
    plans: list[PlanOut]
