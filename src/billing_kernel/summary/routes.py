"""GET /api/v1/billing/org/summary: the current org's billing summary."""

from __future__ import annotations

from billing_kernel.summary.schemas import SummaryOut
from billing_kernel.web.deps import MemberAccess
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

router = billing_router()


@router.get(
    "/org/summary",
    operation_id="getOrgSummary",
    summary="The current org's billing summary",
    responses=problem_responses(400, 403, 404),
)
async def org_summary(access: MemberAccess) -> SummaryOut:
    """Plan, status, trial, the current month, and each metric's usage against the org's
    limit. The org's billing state is created on first use (default plan, in trial).
    Members of the org, or service keys with `quota:check` or `billing:admin`."""
    return SummaryOut.of(await access.kernel.summary.summary(access.org_id))
