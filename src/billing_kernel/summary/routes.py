"""GET /api/v1/billing/org/summary: the current org's billing summary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import StreamingResponse

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.summary.rules import GROUP_BY_PATTERN, Granularity, UsageHistory
from billing_kernel.summary.schemas import (
    GroupOut,
    SummaryOut,
    UsageHistoryOut,
    UsagePointOut,
)
from billing_kernel.web.deps import KernelDep, MemberAccess, OrgAdminOfPath, OrgId
from billing_kernel.web.pagination import DEFAULT_LIMIT, Cursor, Limit
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.responses import CSV_RESPONSE, csv_line, csv_response, next_url
from billing_kernel.web.routers import billing_router, orgs_router
from billing_kernel.web.schemas import MONTH_PATTERN

router = billing_router()
history_router = orgs_router()


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
            description="A month, `YYYY-MM` (default: the current month). Another month "
            "shows its recorded usage (seats: the month's peak): once invoiced, against the "
            "plan that priced it and with the invoice's total; before, against the org's "
            "current plan and overrides; a month that has not started has none yet.",
            examples=["2026-10"],
        ),
    ] = None,
) -> SummaryOut:
    """Plan, status, trial, the month, each metric's usage against the org's limit, and what
    the month comes to (`estimated_total`: the upcoming invoice's total, the same for every
    caller). The org's billing state is created on first use (default plan, in trial).
    Members of the org, or service keys with `quota:check` or `billing:admin`."""
    month = None if period is None else BillingPeriod.parse(period)
    return SummaryOut.of(*await access.kernel.invoices.estimate(access.org_id, month))


FirstMonth = Annotated[
    str | None,
    Query(
        alias="from",
        pattern=MONTH_PATTERN,
        description="First month, YYYY-MM (default: `to`).",
        examples=["2026-06"],
    ),
]
LastMonth = Annotated[
    str | None,
    Query(
        pattern=MONTH_PATTERN,
        description="Last month, YYYY-MM, included (default: the current month).",
        examples=["2026-11"],
    ),
]
PointSize = Annotated[Granularity, Query(description="A point per `month` or per UTC `day`.")]
GroupBy = Annotated[
    str | None,
    Query(
        pattern=GROUP_BY_PATTERN.pattern,
        description="An event property (1-64 letters, digits, `_ . : -`): each point's "
        "usage is also split by its values.",
        examples=["model"],
    ),
]


@history_router.get(
    "/{org_id}/usage",
    operation_id="getOrgUsage",
    summary="An org's usage, month by month or day by day",
)
async def org_usage(
    org_id: OrgId,
    key: OrgAdminOfPath,
    kernel: KernelDep,
    from_: FirstMonth = None,
    to: LastMonth = None,
    granularity: PointSize = Granularity.MONTH,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    group_by: GroupBy = None,
) -> UsageHistoryOut:
    """What the org used in each month, or each UTC day, from `from` to `to`, a page at a
    time (see *Pagination*); with `group_by`, each point's usage also split by the values of
    that event property (tokens by model). Points stop at the current month or today; a
    `from` after `to` has none. Read from the deployment's read replica when it has one, so
    it may lag the writes by up to `BILLING_REPLICA_MAX_LAG_SECONDS`. Needs
    `billing:admin`; 404 for an unknown org."""
    last = BillingPeriod.parse(to) if to else None
    first = BillingPeriod.parse(from_) if from_ else None
    history = await kernel.from_replica().summary.usage_history(
        org_id,
        first=first,
        last=last,
        granularity=granularity,
        after=cursor,
        limit=limit,
        group_by=group_by,
    )
    return UsageHistoryOut(
        org_id=org_id,
        granularity=history.granularity,
        from_=history.first.label,
        to=history.last.label,
        data=[
            UsagePointOut(
                start=p.start,
                end=p.end,
                usage=dict(p.usage),
                groups=None
                if p.groups is None
                else {
                    metric: [GroupOut(value=v, quantity=q) for v, q in values.items()]
                    for metric, values in p.groups.items()
                },
            )
            for p in history.points
        ],
        next_cursor=history.points[-1].start.isoformat() if history.more else None,
    )


@history_router.get(
    "/{org_id}/usage.csv",
    operation_id="exportOrgUsage",
    summary="An org's usage per month or day, as CSV",
    response_class=StreamingResponse,
    responses=CSV_RESPONSE,
)
async def export_org_usage(
    request: Request,
    org_id: OrgId,
    _key: OrgAdminOfPath,
    kernel: KernelDep,
    from_: FirstMonth = None,
    to: LastMonth = None,
    granularity: PointSize = Granularity.MONTH,
    group_by: GroupBy = None,
    cursor: Cursor = None,
) -> StreamingResponse:
    """`getOrgUsage`'s points, one row per point and metric (`start`, `end`, `metric`,
    `quantity`); with `group_by`, one row per point, metric and value of that property, in a
    column named after it. At most 1,000 points an answer (a month or a day each): when there
    are more, a `Link` header (`rel="next"`) names the same export from where this one ends
    (its `cursor`, as `getOrgUsage`'s). Values are made safe for spreadsheets (a leading `'`
    before =, +, -, @, a tab or a carriage return). Read from the read replica, as
    `getOrgUsage`. Needs `billing:admin`."""
    last = BillingPeriod.parse(to) if to else None
    first = BillingPeriod.parse(from_) if from_ else None
    pages: list[UsageHistory] = []
    after, points = cursor, 0
    while points < EXPORT_MOST_POINTS:  # read before the first byte: an unknown org is a 404
        page = await kernel.from_replica().summary.usage_history(
            org_id,
            first=first,
            last=last,
            granularity=granularity,
            after=after,
            limit=EXPORT_POINTS,
            group_by=group_by,
        )
        pages.append(page)
        points += len(page.points)
        if not page.more:
            break
        after = page.points[-1].start.isoformat()
    follow = next_url(request, after) if pages[-1].more and after is not None else None

    async def rows() -> AsyncIterator[str]:
        if group_by is None:
            yield csv_line(("start", "end", "metric", "quantity"))
        else:
            yield csv_line(("start", "end", "metric", group_by, "quantity"))
        for page in pages:
            for point in page.points:
                span = (point.start.isoformat(), point.end.isoformat())
                for metric, quantity in point.usage.items():
                    if point.groups is None:
                        yield csv_line((*span, metric, str(quantity)))
                        continue
                    for value, total in point.groups[metric].items():
                        yield csv_line((*span, metric, value or "", str(total)))

    return csv_response(rows(), f"{org_id}-usage.csv", next_url=follow)


EXPORT_POINTS = 200
EXPORT_MOST_POINTS = 1_000
"""The most points one answer of `usage.csv` holds (a multiple of EXPORT_POINTS); the rest
follow its `Link`."""
"""Points read per transaction by an export."""
