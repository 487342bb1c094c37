"""Credit notes: issuing one on a paid invoice (`POST
/api/v1/billing/invoices/{id}/credit-notes`, for the product's backend with a
`billing:admin` key) and reading an invoice's (`GET
/api/v1/billing/org/invoices/{id}/credit-notes`, for its org's owners and admins)."""

from __future__ import annotations

from decimal import Decimal

from billing_kernel.credit_notes.schemas import CreditNoteIn, CreditNoteListOut, CreditNoteOut
from billing_kernel.web.deps import AdminAccess, InvoiceId, KernelDep, OrgAdmin
from billing_kernel.web.problems import problem_responses
from billing_kernel.web.routers import billing_router

router = billing_router()


@router.post(
    "/invoices/{invoice_id}/credit-notes",
    operation_id="createCreditNote",
    summary="Correct a paid invoice with a credit note: money given back",
    responses=problem_responses(403, 404, 409),
)
async def create_credit_note(
    invoice_id: InvoiceId, body: CreditNoteIn, key: OrgAdmin, kernel: KernelDep
) -> CreditNoteOut:
    """A paid invoice is never voided: it is corrected by a credit note, for all that is
    left of it (`lines` left out) or for the lines named, each for an `amount` or all that
    is left of it; never more than a line billed, or than the invoice came to, counting
    its credit notes before. The worker gives the money back through Stripe, to the
    payment that paid the invoice (`refund_status`), once, keyed `refund:{credit_note_id}`.
    409 `invoice_not_open` for an open invoice (void it) or a void one, `not_refundable`
    for one paid outside Stripe, `invoice_credited` when all is credited already (also when
    another credit note won a race with this one); 422 naming the line otherwise. A
    `billing:admin` key (for the invoice's org, or for every org); 404
    `invoice_not_found` for another org's invoice."""
    lines = (
        None
        if body.lines is None
        else [
            (line.line, None if line.amount is None else Decimal(line.amount))
            for line in body.lines
        ]
    )
    note = await kernel.credit_notes.issue(invoice_id, body.reason, lines, org_id=key.org_id)
    return CreditNoteOut.of(note)


@router.get(
    "/org/invoices/{invoice_id}/credit-notes",
    operation_id="listInvoiceCreditNotes",
    summary="The credit notes of one of the current org's invoices",
    responses=problem_responses(400, 403, 404),
)
async def invoice_credit_notes(invoice_id: InvoiceId, access: AdminAccess) -> CreditNoteListOut:
    """Each credit note on the invoice, first to last: its lines, amount and refund. 404
    for an invoice that is not the org's. Owners and admins, or keys with
    `billing:admin`."""
    kernel = access.kernel
    invoice = await kernel.invoices.get(invoice_id, access.org_id)
    notes = await kernel.credit_notes.of_invoice(invoice.invoice_id)
    return CreditNoteListOut(data=[CreditNoteOut.of(note) for note in notes])
