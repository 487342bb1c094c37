"""The plans on offer (`GET /api/v1/billing/plans`), and how each enforces its limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from billing_kernel.plans.schemas import PlanOut, PlansOut, PolicyIn
from billing_kernel.web.deps import DeploymentAdmin, KernelDep, MetricKey, PrincipalDep
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router
from billing_kernel.web.schemas import Slug

router = billing_router()


@router.get("/plans", operation_id="listPlans", summary="List the active plans")
async def list_plans(_caller: PrincipalDep, kernel: KernelDep) -> PlansOut:
    """Active plans, cheapest first, with what each includes, how each limit is enforced,
    and the overage prices."""
    return PlansOut(plans=[PlanOut.of(plan) for plan in await kernel.plans.list_active()])


@router.put(
    "/plans/{plan_slug}/metrics/{metric}/policy",
    operation_id="putPlanPolicy",
    summary="Set how a plan enforces a metric's limit",
    responses=problem_responses(403, 404),
)
async def put_plan_policy(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    metric: MetricKey,
    body: PolicyIn,
    _key: DeploymentAdmin,
    kernel: KernelDep,
) -> PlanOut:
    """For every org on the plan, at once (an org's own override of a part still wins):
    `soft` never refuses; `hard` refuses usage beyond the limit, after the grace
    `grace_percent` and `grace_period_hours` allow. A `billing:admin` key valid for every
    org. 404 for an unknown plan, or a metric the plan does not name
    (`metric_not_in_plan`)."""
    return PlanOut.of(await kernel.plans.set_policy(plan_slug, metric, body.policy()))
