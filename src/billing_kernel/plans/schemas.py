"""Plans as the API shows them."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.plans.rules import Plan
from billing_kernel.web.schemas import (
    FromDomain,
    MoneyText,
)


class PlanTermsOut(FromDomain):
    metric: str
    included_quantity: int | None = Field(description="Included per month; null: unlimited.")
    overage_unit_price: MoneyText
    overage_unit_size: int = Field(description="Units the overage price is for, e.g. 1000.")


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
        terms = [PlanTermsOut.model_validate(t) for t in plan.metrics.values()]
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
