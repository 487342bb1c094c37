"""Alert thresholds (`/api/v1/orgs/{org_id}/alert-thresholds`, a plan's under
`/api/v1/billing/plans`) and an org's alerts (`/api/v1/orgs/{org_id}/alerts`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from billing_kernel.alerts.rules import Threshold
from billing_kernel.alerts.schemas import (
    AlertOut,
    AlertsOut,
    MetricThresholdsOut,
    OrgThresholdsOut,
    PlanThresholdsOut,
    ThresholdOut,
    ThresholdsIn,
)
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.web.deps import (
    DeploymentAdmin,
    KernelDep,
    MetricKey,
    OrgAdminOfPath,
    OrgId,
)
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router, orgs_router
from billing_kernel.web.schemas import MONTH_PATTERN, Slug

router = orgs_router()
plan_router = billing_router()


@router.get(
    "/{org_id}/alert-thresholds",
    operation_id="getOrgAlertThresholds",
    summary="An org's alert thresholds for every metric",
)
async def get_thresholds(org_id: OrgId, key: OrgAdminOfPath, kernel: KernelDep) -> OrgThresholdsOut:
    """Each metric's thresholds for the org (its own, or its plan's: by default 80 % and
    100 % of each limited metric), with the usage that reaches each under its current
    limit. Needs `billing:admin`."""
    return await _thresholds(org_id, kernel)


@router.put(
    "/{org_id}/alert-thresholds/{metric}",
    operation_id="putOrgAlertThresholds",
    summary="Give an org its own alert thresholds for a metric",
)
async def put_thresholds(
    org_id: OrgId, metric: MetricKey, body: ThresholdsIn, key: OrgAdminOfPath, kernel: KernelDep
) -> OrgThresholdsOut:
    """Replace the plan's thresholds for this org and metric (an empty list: no alerts).
    Alerts follow at once: a threshold usage is already at is crossed now, and one usage
    is now under (or that is no longer set) is resolved. Needs `billing:admin`."""
    await kernel.alerts.set_thresholds(org_id, metric, body.parsed())
    return await _thresholds(org_id, kernel)


@router.delete(
    "/{org_id}/alert-thresholds/{metric}",
    operation_id="deleteOrgAlertThresholds",
    summary="Return an org to its plan's alert thresholds for a metric",
)
async def delete_thresholds(
    org_id: OrgId, metric: MetricKey, key: OrgAdminOfPath, kernel: KernelDep
) -> OrgThresholdsOut:
    """Drop the org's own thresholds for the metric; its plan's apply again, at once.
    Idempotent. Needs `billing:admin`."""
    await kernel.alerts.set_thresholds(org_id, metric, None)
    return await _thresholds(org_id, kernel)


async def _thresholds(org_id: str, kernel: KernelDep) -> OrgThresholdsOut:
    found = await kernel.alerts.thresholds(org_id)
    return OrgThresholdsOut(
        org_id=org_id,
        metrics=[
            MetricThresholdsOut(
                metric=metric,
                limit=limit,
                source="org" if own else "plan",
                thresholds=[ThresholdOut.of(t, limit) for t in thresholds],
            )
            for metric, (thresholds, limit, own) in found.items()
        ],
    )


@router.get("/{org_id}/alerts", operation_id="listOrgAlerts", summary="An org's alerts in a month")
async def list_alerts(
    org_id: OrgId,
    key: OrgAdminOfPath,
    kernel: KernelDep,
    period: Annotated[
        str | None,
        Query(
            pattern=MONTH_PATTERN,
            description="A month, `YYYY-MM` (default: the current month).",
            examples=["2026-10"],
        ),
    ] = None,
) -> AlertsOut:
    """Each threshold crossed in the month (once per crossing: `crossings` counts them),
    whether a change of limit has resolved it since, and hard-limit blocks (`blocked`).
    Needs `billing:admin`."""
    await kernel.orgs.require(org_id)
    month = (
        BillingPeriod.containing(kernel.now()) if period is None else BillingPeriod.parse(period)
    )
    states = await kernel.alerts.states(org_id, month)
    return AlertsOut(org_id=org_id, period=month.label, alerts=[AlertOut.of(s) for s in states])


@plan_router.put(
    "/plans/{plan_slug}/metrics/{metric}/alert-thresholds",
    operation_id="putPlanAlertThresholds",
    summary="Set what a plan alerts at for a metric",
    responses=problem_responses(403, 404),
)
async def put_plan_thresholds(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    metric: MetricKey,
    body: ThresholdsIn,
    _key: DeploymentAdmin,
    kernel: KernelDep,
) -> PlanThresholdsOut:
    """For every org on the plan without thresholds of its own for the metric; those with
    usage this month are reevaluated at once. A `billing:admin` key valid for every org.
    404 for an unknown plan, or a metric the plan does not name."""
    await kernel.alerts.set_plan_thresholds(plan_slug, metric, body.parsed())
    thresholds: tuple[Threshold, ...] = (await kernel.alerts.plan_thresholds(plan_slug))[metric]
    limit = (await kernel.plans.get(plan_slug)).allowance(metric).included_quantity
    return PlanThresholdsOut(
        plan_slug=plan_slug,
        metric=metric,
        thresholds=[ThresholdOut.of(t, limit) for t in thresholds],
    )
