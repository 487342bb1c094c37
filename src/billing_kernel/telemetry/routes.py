"""`GET /metrics`: the kernel's metrics in Prometheus's text format, for a key with
`metrics:read` (or a `billing:admin` key for every org), over the API's own listener."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from billing_kernel.auth.rules import ApiKeyCaller, Scope
from billing_kernel.errors import Forbidden
from billing_kernel.telemetry.instruments import counted
from billing_kernel.telemetry.service import Outbox
from billing_kernel.web.deps import KernelDep, PrincipalDep, is_deployment_admin
from billing_kernel.web.problems import problem_responses

router = APIRouter(tags=["operations"])


async def _metrics_reader(principal: PrincipalDep) -> ApiKeyCaller:
    if isinstance(principal, ApiKeyCaller) and (
        Scope.METRICS_READ in principal.scopes or is_deployment_admin(principal)
    ):
        return principal
    raise Forbidden(
        "the metrics need an API key with metrics:read (or billing:admin for every org)"
    )


MetricsReader = Annotated[ApiKeyCaller, Depends(_metrics_reader)]


@router.get(
    "/metrics",
    operation_id="getMetrics",
    summary="The kernel's metrics, for Prometheus",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
        **problem_responses(401, 403),
    },
)
async def get_metrics(_reader: MetricsReader, kernel: KernelDep) -> Response:
    """Requests by route, method and status with their latency; usage events by outcome;
    quota decisions by kind and outcome; deliveries by outcome; failed close rounds;
    database connections in use; each worker task's last round; and, read now, the outbox:
    billing events not yet dispatched and deliveries waiting, with the age of the oldest of
    each, the orgs' months that have closed and have no invoice yet, and whether usage lines
    landed outside their month's partition. Under `serve --workers N`, the sum of every
    worker's. Needs an API key with `metrics:read` (`billing-kernel api-keys create --scopes
    metrics:read`), or `billing:admin` for every org. See docs/operations.md for the alerts
    worth setting."""
    read_now = CollectorRegistry()
    telemetry = kernel.telemetry
    awaiting, stray = await telemetry.months_awaiting_close(), await telemetry.lines_in_default()
    read_now.register(_ReadNow(await telemetry.outbox(), awaiting, stray))
    body = generate_latest(counted()) + generate_latest(read_now)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class _ReadNow(Collector):
    """The outbox and the months awaiting close as read for this scrape (values, not
    instruments: nothing is stored)."""

    def __init__(self, outbox: Outbox, months_awaiting_close: int, lines_in_default: bool) -> None:
        self.outbox = outbox
        self.months_awaiting_close = months_awaiting_close
        self.lines_in_default = lines_in_default

    def collect(self) -> list[GaugeMetricFamily]:
        o = self.outbox
        return [
            GaugeMetricFamily(name, text, value=value)
            for name, text, value in (
                (
                    "billing_outbox_undispatched_events",
                    "Billing events not yet dispatched.",
                    o.undispatched,
                ),
                (
                    "billing_outbox_undispatched_age_seconds",
                    "How long the oldest billing event not yet dispatched has waited.",
                    o.undispatched_age_seconds,
                ),
                (
                    "billing_outbox_pending_deliveries",
                    "Deliveries waiting for an attempt.",
                    o.pending,
                ),
                (
                    "billing_outbox_pending_age_seconds",
                    "How long the oldest delivery waiting for an attempt has waited.",
                    o.pending_age_seconds,
                ),
                (
                    "billing_months_awaiting_close",
                    "Months of the orgs that have closed (their grace passed) with no invoice.",
                    self.months_awaiting_close,
                ),
                (
                    "billing_usage_lines_in_default_partition",
                    "1 when usage lines landed in the DEFAULT partition (PostgreSQL): a month "
                    "that had no partition of its own; else 0.",
                    int(self.lines_in_default),
                ),
            )
        ]
