"""The metric catalogue (`GET /api/v1/billing/metrics`), and defining a meter."""

from __future__ import annotations

from fastapi import Response

from billing_kernel.metrics.schemas import (
    MeterPreviewOut,
    MetricDefinedOut,
    MetricIn,
    MetricOut,
    MetricsOut,
)
from billing_kernel.web.deps import (
    DeploymentAdmin,
    KernelDep,
    MetricKey,
    PrincipalDep,
    is_deployment_admin,
)
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

router = billing_router()


@router.get("/metrics", operation_id="listMetrics", summary="List the metrics and their meters")
async def list_metrics(caller: PrincipalDep, kernel: KernelDep) -> MetricsOut:
    """Every metric, in display order: what each counts (event names, aggregation, amount
    property, filters) and, for a `billing:admin` key valid for every org, how many events
    it skipped this month over every org (null for anyone else: it is every org's figure)."""
    skipped = await kernel.metrics.skipped_this_month() if is_deployment_admin(caller) else None
    return MetricsOut(
        metrics=[
            MetricOut.of(m, None if skipped is None else skipped.get(m.key, 0))
            for m in await kernel.metrics.catalogue()
        ]
    )


@router.put(
    "/metrics/{metric}",
    operation_id="defineMetric",
    summary="Define a metric, or change which events it counts",
    responses=problem_responses(403)
    | {201: {"model": MetricDefinedOut, "description": "Defined."}},
)
async def define_metric(
    metric: MetricKey,
    body: MetricIn,
    _key: DeploymentAdmin,
    kernel: KernelDep,
    response: Response,
) -> MetricDefinedOut:
    """A new metric (201), or a new definition for an existing one (200): from now on it
    counts the events it names that pass its filters. Events already counted stay counted
    as they were. Plans may then include it (`updatePlan`). The key is 1-64 lowercase
    letters, digits and `_`, starting with a letter; an aggregation never changes, and
    `seats` cannot be redefined (422 `invalid_input`). Other kernels of the deployment see
    it within 10 s. The answer's `last_month` says what it, as now defined, would have made
    of last month's events of its names: how many it would have counted, and how many it
    would have skipped for want of its property. A `billing:admin` key valid for every
    org."""
    meter = body.metric(metric)
    defined = await kernel.metrics.define(meter)
    if defined.created:
        response.status_code = 201
    return MetricDefinedOut(
        **MetricOut.of(meter).model_dump(), last_month=MeterPreviewOut.of(defined.last_month)
    )
