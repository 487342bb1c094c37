"""The current org's invoices (`/api/v1/billing/org/invoices/...`): the upcoming one, the
finalized ones with their lines, each line explained; and recording a payment or a void."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.invoices.schemas import (
    BacktestIn,
    BacktestOut,
    FinalizedInvoiceOut,
    InvoiceLineOut,
    InvoiceOut,
    LineExplainedOut,
    VoidIn,
)
from billing_kernel.web.deps import (
    AdminAccess,
    DeploymentAdmin,
    InvoiceId,
    KernelDep,
    OrgAdmin,
)
from billing_kernel.web.pagination import DEFAULT_LIMIT, Limit, Page, SequenceCursor, page_of
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router
from billing_kernel.web.schemas import Slug

router = billing_router()


@router.get(
    "/org/invoices/upcoming",
    operation_id="getUpcomingInvoice",
    summary="The current org's upcoming invoice",
    responses=problem_responses(400, 403, 404),
)
async def upcoming_invoice(access: AdminAccess) -> InvoiceOut:
    """The current period's invoice as it stands now (`draft`): the base fee of the plan in
    force at the period's start, a credit and a charge for each change of plan, version or
    billable status since (to the second), each metric's usage so far beyond what is
    included, priced by the plan the org is on, and adjustments for usage of earlier months
    that arrived after they were invoiced. A trial and a cancellation are not billed. Owners
    and admins of the org, or service keys with `billing:admin`."""
    kernel = access.kernel
    return InvoiceOut.of(await kernel.invoices.upcoming(access.org_id), kernel.now())


@router.get(
    "/org/invoices",
    operation_id="listInvoices",
    summary="The current org's finalized invoices",
    responses=problem_responses(400, 403, 404),
)
async def list_invoices(
    access: AdminAccess,
    limit: Limit = DEFAULT_LIMIT,
    cursor: SequenceCursor = None,
) -> Page[FinalizedInvoiceOut]:
    """Newest first, a page at a time, without their lines. A period's invoice is made when
    the period closes (BILLING_LATE_EVENT_GRACE_HOURS after it ends). Owners and admins of
    the org, or service keys with `billing:admin`."""
    rows = await access.kernel.invoices.list_invoices(
        access.org_id, before=None if cursor is None else int(cursor), limit=limit + 1
    )
    found, next_cursor = page_of(rows, limit, lambda invoice: str(invoice.sequence))
    return Page[FinalizedInvoiceOut](
        data=[FinalizedInvoiceOut.of(invoice, whole=False) for invoice in found],
        next_cursor=next_cursor,
    )


@router.get(
    "/org/invoices/{invoice_id}",
    operation_id="getInvoice",
    summary="One finalized invoice, with its lines",
    responses=problem_responses(400, 403, 404),
)
async def get_invoice(invoice_id: InvoiceId, access: AdminAccess) -> FinalizedInvoiceOut:
    """The invoice with its lines (each with its formula) and the usage it billed. 404
    `invoice_not_found` for an invoice of another org."""
    return FinalizedInvoiceOut.of(await access.kernel.invoices.get(invoice_id, access.org_id))


@router.get(
    "/org/invoices/{invoice_id}/lines/{number}",
    operation_id="explainInvoiceLine",
    summary="One invoice line, explained",
    responses=problem_responses(400, 403, 404),
)
async def explain_line(
    invoice_id: InvoiceId,
    number: Annotated[int, Path(ge=1, le=10_000, description="The line's number.")],
    access: AdminAccess,
) -> LineExplainedOut:
    """The line with its formula and numbers, how many usage events it bills, and a sample
    of their idempotency keys."""
    found = await access.kernel.invoices.explain(invoice_id, number, access.org_id)
    line = next(line for line in found.invoice.lines if line.number == number)
    return LineExplainedOut(
        invoice_id=found.invoice.invoice_id,
        number=found.invoice.number,
        line=InvoiceLineOut.stored(line),
        events=found.events,
        sample_keys=list(found.sample_keys),
    )


@router.post(
    "/invoices/{invoice_id}/mark-paid",
    operation_id="markInvoicePaid",
    summary="Record that an invoice was paid",
    responses=problem_responses(403, 404, 409),
)
async def mark_paid(invoice_id: InvoiceId, key: OrgAdmin, kernel: KernelDep) -> FinalizedInvoiceOut:
    """What the product's payments say: only an open invoice becomes paid. Idempotent for a
    paid one; 409 `invoice_not_open` for a void one (also when a void won a race with this
    call). A `billing:admin` key (for the invoice's org, or for every org); 404
    `invoice_not_found` for another org's invoice, as for one that does not exist."""
    await kernel.invoices.get(invoice_id, key.org_id)
    return FinalizedInvoiceOut.of(await kernel.invoices.mark_paid(invoice_id))


@router.post(
    "/invoices/{invoice_id}/void",
    operation_id="voidInvoice",
    summary="Void an open invoice and issue its correction",
    responses=problem_responses(403, 404, 409),
)
async def void_invoice(
    invoice_id: InvoiceId, body: VoidIn, key: OrgAdmin, kernel: KernelDep
) -> FinalizedInvoiceOut:
    """The invoice becomes `void` with the reason, and a corrected invoice for the same
    month replaces it (a new number; the same usage events; the org's plans and limits as
    they are now): the answer. Only an open invoice is voided: 409 `invoice_paid` for a
    paid one (a paid invoice is never voided), 409 `invoice_not_open` for a void one (also
    when another void or a payment won a race with this call), 409 `events_forgotten` for
    one that bills a month whose events are forgotten (BILLING_EVENT_RETENTION_MONTHS: its
    correction could not be recomputed). A `billing:admin` key (for
    the invoice's org, or for every org); 404 `invoice_not_found` for another org's
    invoice, as for one that does not exist."""
    await kernel.invoices.get(invoice_id, key.org_id)
    return FinalizedInvoiceOut.of(await kernel.invoices.void(invoice_id, body.reason))


@router.post(
    "/plans/{plan_slug}/backtest",
    operation_id="backtestPlan",
    summary="What a draft of a plan would have invoiced for a closed month",
    responses=problem_responses(403, 404, 409),
)
async def backtest_plan(
    plan_slug: Annotated[Slug, Path(description="The plan's slug.")],
    body: BacktestIn,
    _key: DeploymentAdmin,
    kernel: KernelDep,
) -> BacktestOut:
    """Prices a draft of the plan (its terms whole, as `updatePlan` takes them) against the
    month's recorded usage of every org the plan invoiced for it (or of `org_ids`), by the
    code that closes months and verifies invoices, and answers per org and in all what the
    invoice charged, what the draft would have, and the difference. The plan's current
    terms reproduce every invoice exactly. Where an org had its own limit, the draft keeps
    it; late usage of earlier months stays priced as those months were. Nothing is written;
    it reads from the replica when one is set. 409 `period_not_closed` before the month
    closes. A `billing:admin` key valid for every org."""
    backtest = await kernel.from_replica().invoices.backtest(
        body.plan.plan_named(plan_slug),
        BillingPeriod.parse(body.period),
        body.org_ids,
    )
    return BacktestOut.of(backtest)
