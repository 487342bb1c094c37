"""The seed's four billing endpoints."""

from __future__ import annotations

from fastapi import APIRouter

from billing_kernel.api.deps import AdminAccess, MemberAccess, PrincipalDep, ServiceDep
from billing_kernel.api.problems import problem_responses
from billing_kernel.api.schemas import (
    CheckIn,
    CheckOut,
    PlanChangeIn,
    PlanChangeOut,
    PlanOut,
    PlansOut,
    SummaryOut,
)

router = APIRouter(
    prefix="/api/v1/billing", tags=["billing"], responses=problem_responses(401, 422)
)


@router.get("/plans", summary="List the active plans")
async def list_plans(_caller: PrincipalDep, service: ServiceDep) -> PlansOut:
    """Active plans, cheapest first, with what each includes and its overage prices."""
    return PlansOut(plans=[PlanOut.of(plan) for plan in await service.list_plans()])


@router.get(
    "/org/summary",
    summary="The current org's billing summary",
    responses=problem_responses(400, 403, 404),
)
async def org_summary(access: MemberAccess) -> SummaryOut:
    """Plan, status, trial, the current month, and each metric's usage against the org's
    limit. The org's billing state is created on first use (default plan, in trial).
    Members of the org, or service keys with `quota:check` or `billing:admin`."""
    return SummaryOut.of(await access.service.build_org_billing_summary(access.org_id))


@router.post(
    "/org/plan",
    summary="Move the current org to another plan",
    responses=problem_responses(400, 403, 404, 409),
)
async def change_plan(body: PlanChangeIn, access: AdminAccess) -> PlanChangeOut:
    """Owners and admins of the org, or service keys with `billing:admin`. An unknown plan
    is 404 `plan_not_found`; a withdrawn one is 409 `plan_inactive`."""
    state = await access.service.set_org_plan(access.org_id, body.plan_slug)
    return PlanChangeOut(org_id=state.org_id, plan_slug=state.plan_slug, status=state.status)


@router.post(
    "/org/check",
    summary="Quota decision for the current org",
    responses=problem_responses(400, 403, 404),
)
async def check_quota(body: CheckIn, access: MemberAccess) -> CheckOut:
    """Whether the org may use `amount` more of `metric`. Limits are soft in this version:
    `allowed` is always true, and `soft_limit_exceeded` / `would_exceed` say where usage
    stands. Members of the org, or service keys with `quota:check` or `billing:admin`."""
    return CheckOut.model_validate(
        await access.service.check_org_quota(access.org_id, body.metric, body.amount)
    )
