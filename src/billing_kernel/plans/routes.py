"""The plans on offer (`GET /api/v1/billing/plans`), and how each enforces its limits."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from billing_kernel.auth.rules import User
from billing_kernel.plans.schemas import PlanBody, PlanIn, PlanOut, PlansOut, PolicyIn
from billing_kernel.web.deps import DeploymentAdmin, KernelDep, MetricKey, PrincipalDep
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router, links_to
from billing_kernel.web.schemas import Slug

router = billing_router()


@router.get("/plans", operation_id="listPlans", summary="List the active plans")
async def list_plans(caller: PrincipalDep, kernel: KernelDep) -> PlansOut:
    """Active plans, cheapest first, with what each includes, how each limit is enforced,
    and the overage prices. A signed-in person sees the plans offered to orgs (public); a
    service key sees private ones too. Empty on a new deployment, until its operator
    creates plans."""
    offered = isinstance(caller, User)
    return PlansOut(
        plans=[PlanOut.of(plan) for plan in await kernel.plans.list_active(offered=offered)]
    )


@router.post(
    "/plans",
    operation_id="createPlan",
    summary="Offer a new plan",
    status_code=201,
    responses={
        **problem_responses(403, 404, 409),
        **links_to(201, "plan_slug", "slug", "getPlan", "updatePlan", "listPlanVersions"),
    },
)
async def create_plan(body: PlanIn, _key: DeploymentAdmin, kernel: KernelDep) -> PlanOut:
    """A plan with its monthly price, and for each metric it names what it includes, the
    price of the units beyond it (`price_model`: per unit, package, graduated or volume
    tiers; docs/pricing.md) and its policy (left out: soft); a metric it
    does not name gives none (consumes and checks of it are refused; usage reported of it
    is counted, free); `included_quantity: null` makes a metric unlimited. Active at once;
    it alerts at 80 % and 100 % of each limit unless set otherwise. With `default`, new orgs
    start on it from now on (a new deployment has no plan, and refuses to create orgs until
    one is the default). 409 `plan_exists` for a slug taken (`updatePlan` changes a plan).
    A `billing:admin` key valid for every org."""
    return PlanOut.of(await kernel.plans.create(body.plan(), default=body.default))


@router.get(
    "/plans/{plan_slug}",
    operation_id="getPlan",
    summary="Read a plan, at its current or an earlier version",
    responses=problem_responses(404),
)
async def get_plan(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    _caller: PrincipalDep,
    kernel: KernelDep,
    version: Annotated[
        int | None,
        Query(ge=1, le=2**31 - 1, description="Left out: the current version."),
    ] = None,
) -> PlanOut:
    """The plan, offered or withdrawn, with its terms at `version`: orgs subscribed earlier
    may be on an earlier version (their `plan_version`)."""
    return PlanOut.of(await kernel.plans.get(plan_slug, version=version))


@router.get(
    "/plans/{plan_slug}/versions",
    operation_id="listPlanVersions",
    summary="Every version of a plan",
    responses=problem_responses(404),
)
async def list_plan_versions(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    _caller: PrincipalDep,
    kernel: KernelDep,
) -> PlansOut:
    """Oldest first; the last is the one new subscribers get."""
    return PlansOut(plans=[PlanOut.of(plan) for plan in await kernel.plans.versions(plan_slug)])


@router.put(
    "/plans/{plan_slug}",
    operation_id="updatePlan",
    summary="Change a plan's price, terms, name or policies",
    responses=problem_responses(403, 404),
)
async def update_plan(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    body: PlanBody,
    _key: DeploymentAdmin,
    kernel: KernelDep,
) -> PlanOut:
    """The plan whole, as `createPlan` takes it (without the slug). A change of its price, of
    the metrics it names or of what one includes or charges beyond makes a new `version`:
    orgs subscribing from now on get it, and every org already on the plan keeps its version
    until it changes plan (moving an org to the same plan moves it to the current version).
    Name, description and `public` (left out: kept as it is) change in place; a policy
    changes for every org on the plan, as `putPlanPolicy` does. The currency cannot change
    (422: offer a new plan). Idempotent. A `billing:admin` key valid for every org."""
    plan = body.plan_named(plan_slug)
    return PlanOut.of(await kernel.plans.update(plan, keep_public=body.public is None))


@router.post(
    "/plans/{plan_slug}/deactivate",
    operation_id="deactivatePlan",
    summary="Stop offering a plan",
    responses=problem_responses(403, 404, 409),
)
async def deactivate_plan(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    _key: DeploymentAdmin,
    kernel: KernelDep,
) -> PlanOut:
    """No org may move to it from now on; the orgs on it keep it and its terms. 409
    `plan_is_default` for the plan new orgs start on. Idempotent. A `billing:admin` key valid
    for every org."""
    return PlanOut.of(await kernel.plans.deactivate(plan_slug))


@router.post(
    "/plans/{plan_slug}/default",
    operation_id="setDefaultPlan",
    summary="Make a plan the one new orgs start on",
    responses=problem_responses(403, 404, 409),
)
async def set_default_plan(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    _key: DeploymentAdmin,
    kernel: KernelDep,
) -> PlanOut:
    """From now on, orgs created without a plan (by `putOrg`, or by their first usage) start
    on it; the orgs on the plan that was the default keep it, and that plan may then be
    withdrawn (`deactivatePlan`). 409 `plan_inactive` for a plan no longer offered.
    Idempotent. A `billing:admin` key valid for every org."""
    return PlanOut.of(await kernel.plans.set_default(plan_slug))


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
