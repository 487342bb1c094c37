"""GET /api/v1/billing/plans: the plans on offer."""

from __future__ import annotations

from billing_kernel.plans.schemas import PlanOut, PlansOut
from billing_kernel.web.deps import KernelDep, PrincipalDep
from billing_kernel.web.routers import billing_router

router = billing_router()


@router.get("/plans", operation_id="listPlans", summary="List the active plans")
async def list_plans(_caller: PrincipalDep, kernel: KernelDep) -> PlansOut:
    """Active plans, cheapest first, with what each includes and its overage prices."""
    return PlansOut(plans=[PlanOut.of(plan) for plan in await kernel.plans.list_active()])
