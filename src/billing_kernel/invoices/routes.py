"""GET /api/v1/billing/org/invoices/upcoming: what the current period will bill."""

from __future__ import annotations

from billing_kernel.invoices.schemas import InvoiceOut
from billing_kernel.web.deps import AdminAccess
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

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
    billable status since (to the second), and each metric's usage so far beyond what is
    included, priced by the plan the org is on. A trial and a cancellation are not billed.
    Owners and admins of the org, or service keys with `billing:admin`."""
    kernel = access.kernel
    return InvoiceOut.of(await kernel.invoices.upcoming(access.org_id), kernel.now())
