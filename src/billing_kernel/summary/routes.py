"""GET /api/v1/billing/org/summary: the current org's billing summary."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.summary.schemas import SummaryOut
from billing_kernel.web.deps import MemberAccess
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router
from billing_kernel.web.schemas import MONTH_PATTERN

router = billing_router()


@router.get(
    "/org/summary",
    operation_id="getOrgSummary",
    summary="The current org's billing summary",
    responses=problem_responses(400, 403, 404),
)
async def org_summary(
    access: MemberAccess,
    period: Annotated[
        str | None,
        Query(
            pattern=MONTH_PATTERN,
            description="A month, `YYYY-MM`, up to the current one (default: the current "
            "month). A past month shows its recorded usage (seats: the month's peak) against "
            "the org's current plan and overrides.",
            examples=["2026-10"],
        ),
    ] = None,
) -> SummaryOut:
    """Plan, status, trial, the month, and each metric's usage against the org's limit. The
    org's billing state is created on first use (default plan, in trial). A month after the
    current one is 422. Members of the org, or service keys with `quota:check` or
    `billing:admin`."""
    month = None if period is None else BillingPeriod.parse(period)
    return SummaryOut.of(await access.kernel.summary.summary(access.org_id, period=month))
