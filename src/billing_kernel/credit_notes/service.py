"""Credit notes: a paid invoice corrected by giving money back, never by voiding it. A note
is written, with its number and the invoice's credited amount moved from what was read, in
one transaction; its refund is asked of Stripe afterwards, by the worker (never inside a
request), keyed `refund:{credit_note_id}` and looked for first when the note is old enough
for the key to have lapsed, so a refund is made once. A refund Stripe is still deciding is
read again at each round until it is decided."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from billing_kernel.common.validation import validate_text
from billing_kernel.credit_notes.repository import CreditNoteRepository
from billing_kernel.credit_notes.rules import (
    BilledLine,
    CreditedInvoice,
    CreditNote,
    RefundStatus,
    credit_disagreements,
    credit_lines,
    credit_note_number,
    refund_moved,
)
from billing_kernel.credits.service import CreditService
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import (
    CreditNoteNotFound,
    InvalidInput,
    InvoiceNotOpen,
    NotFound,
    NotRefundable,
)
from billing_kernel.invoices.rules import StoredInvoice
from billing_kernel.invoices.service import InvoiceService
from billing_kernel.payments.checks import Difference
from billing_kernel.payments.gateway import StripeGateway, StripeRefused, StripeUnavailable
from billing_kernel.payments.rules import Payment, PaymentStatus, RefundMade
from billing_kernel.payments.service import PaymentService

logger = logging.getLogger(__name__)

KEY_LAPSES = timedelta(hours=12)
"""A pending refund older than this is looked for at Stripe before it is asked for again:
Stripe keeps an idempotency key for 24 hours, and the worker may have been down."""


class CreditNoteService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        gateway: StripeGateway | None,
        *,
        invoices: InvoiceService,
        payments: PaymentService,
        credits: CreditService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._gateway = gateway
        self._invoices = invoices
        self._payments = payments
        self._credits = credits

    async def issue(
        self,
        invoice_id: str,
        reason: str,
        lines: Sequence[tuple[int, Decimal | None]] | None = None,
        *,
        org_id: str | None = None,
    ) -> CreditNote:
        """A credit note on a paid invoice (by id or number; one of `org_id`'s when given),
        with the reason: all that is left to credit (`lines` None), or the lines named, each
        for an amount or (None) all that is left of it (`rules.credit_lines`). The money
        goes back to the card it came from: the worker refunds it through Stripe; for an
        invoice paid outside Stripe it is kept as a credit balance the org's next invoices
        draw (`balance`, with its grant, in the same transaction). Written
        with the invoice's credited amount, in one transaction that checks the invoice is
        still paid and credited as read. InvoiceNotOpen for an open invoice (void it) or a
        void one; NotRefundable for one paid through Stripe where the deployment has no
        Stripe key; NothingToCredit when all is credited (or another note
        won a race); InvalidInput naming the line."""
        reason = (validate_text(reason, "reason", 500) or "").strip()
        if not reason:
            raise InvalidInput("a credit note needs a reason", field="reason")
        async with self._tx.begin() as unit:
            invoice = await self._invoices.by_number(invoice_id, unit)
            if org_id is not None and invoice.org_id != org_id:
                invoice = await self._invoices.get(invoice.invoice_id, org_id, unit)  # 404
            if invoice.status == "open":
                raise InvoiceNotOpen(
                    f"invoice {invoice.number} is open: void it (a correction replaces it), "
                    "a credit note is for a paid one"
                )
            if invoice.status != "paid":
                raise InvoiceNotOpen(f"invoice {invoice.number} is {invoice.status}")
            if invoice.paid_by is not None and self._gateway is None:
                raise NotRefundable(
                    f"invoice {invoice.number} was paid through Stripe, and this deployment "
                    "has no Stripe key to refund it with (BILLING_STRIPE_API_KEY)",
                    invoice_id=invoice.invoice_id,
                )
            repo = CreditNoteRepository(unit)
            before = await repo.of_invoice(invoice.invoice_id)
            credited: dict[int, Decimal] = {}
            for note in before:
                for line in note.lines:
                    credited[line.number] = credited.get(line.number, Decimal(0)) + line.amount
            made = credit_lines(_billed(invoice), credited, lines, invoice.currency)
            amount = sum((line.amount for line in made), Decimal(0))
            await self._invoices.add_credit(invoice, amount, unit)
            sequence = await repo.next_number()
            now = self._clock()
            note = CreditNote(
                credit_note_id="cn_" + secrets.token_hex(12),
                number=credit_note_number(sequence),
                sequence=sequence,
                org_id=invoice.org_id,
                invoice_id=invoice.invoice_id,
                reason=reason,
                amount=amount,
                currency=invoice.currency,
                lines=tuple(made),
                payment_id=invoice.paid_by,
                # Paid outside Stripe: the money stays, for the org's next invoices.
                status=RefundStatus.PENDING if invoice.paid_by else RefundStatus.BALANCE,
                stripe_refund_id=None,
                failure_message=None,
                created_at=now,
                updated_at=now,
            )
            await repo.insert(note)
            if note.status is RefundStatus.BALANCE:
                await self._credits.grant(
                    note.org_id,
                    note.currency,
                    note.amount,
                    source="credit_note",
                    source_id=note.credit_note_id,
                    uow=unit,
                )
            return note

    async def get(self, credit_note_id: str, org_id: str | None = None) -> CreditNote:
        """A credit note by id or number (one of `org_id`'s when given)."""
        async with self._tx.read() as unit:
            found = await CreditNoteRepository(unit).get(credit_note_id)
        if found is None or (org_id is not None and found.org_id != org_id):
            raise CreditNoteNotFound(f"no credit note {credit_note_id!r}")
        return found

    async def of_invoice(self, invoice_id: str, uow: UnitOfWork | None = None) -> list[CreditNote]:
        """The invoice's credit notes, first to last."""
        async with self._tx.read(uow) as unit:
            return await CreditNoteRepository(unit).of_invoice(invoice_id)

    async def latest(self, org_id: str | None, limit: int = 50) -> list[CreditNote]:
        """The org's credit notes (or every org's), newest first."""
        async with self._tx.read() as unit:
            return await CreditNoteRepository(unit).latest(org_id, limit)

    async def refund_due(self, limit: int = 100) -> list[CreditNote]:
        """The worker's round: each credit note whose refund Stripe has not answered,
        asked (or, made, read again); one Stripe cannot take now is left for the next."""
        if self._gateway is None:
            return []
        async with self._tx.read() as unit:
            pending = await CreditNoteRepository(unit).pending(limit)
        done: list[CreditNote] = []
        for note in pending:
            try:
                done.append(await self.refund(note))
            except StripeUnavailable:
                continue  # the same key next round
        return done

    async def refund(self, note: CreditNote) -> CreditNote:
        """Give a pending credit note's money back through Stripe, once: a refund made
        before (its id kept, or found by metadata once the key may have lapsed) is read,
        not made again. A refusal (the charge refunded or disputed at Stripe) fails it,
        with Stripe's words, for the operator."""
        stripe = self._gateway
        assert stripe is not None
        if note.stripe_refund_id is not None:
            return await self.settle(
                note.credit_note_id, await stripe.refund_now(note.stripe_refund_id)
            )
        paid = await self._payment_of(note)
        if (
            paid is None
            or paid.status is not PaymentStatus.SUCCEEDED
            or not paid.stripe_payment_intent_id
        ):
            return await self._fail(note, f"{note.payment_id} has no charge at Stripe to refund")
        found = None
        if note.created_at < self._clock() - KEY_LAPSES:
            found = await stripe.find_refund(paid.stripe_payment_intent_id, note.credit_note_id)
        try:
            made = found or await stripe.refund(
                payment_intent_id=paid.stripe_payment_intent_id,
                amount=note.amount,
                currency=note.currency,
                credit_note_id=note.credit_note_id,
                invoice_id=note.invoice_id,
            )
        except StripeRefused as refused:
            return await self._fail(note, str(refused))
        return await self.settle(note.credit_note_id, made)

    async def _payment_of(self, note: CreditNote) -> Payment | None:
        """The payment a credit note gives money back from (the one that paid its invoice)."""
        attempts = await self._payments.attempts(note.invoice_id)
        return next((p for p in attempts if p.payment_id == note.payment_id), None)

    async def _fail(self, note: CreditNote, why: str) -> CreditNote:
        logger.warning("refund of %s failed: %s", note.number, why)
        async with self._tx.begin() as unit:
            repo = CreditNoteRepository(unit)
            await repo.move(
                note.credit_note_id,
                RefundStatus.PENDING,
                RefundStatus.FAILED,
                refund_id=None,
                failure=why,
                now=self._clock(),
            )
            found = await repo.get(note.credit_note_id)
        assert found is not None
        return found

    async def settle(self, credit_note_id: str, made: RefundMade) -> CreditNote:
        """Apply what Stripe said of a credit note's refund: moved forward only (old news
        changes nothing), Stripe's refund id kept."""
        reported = (
            None
            if made.succeeded is None
            else RefundStatus.REFUNDED
            if made.succeeded
            else RefundStatus.FAILED
        )
        async with self._tx.begin() as unit:
            repo = CreditNoteRepository(unit)
            while True:
                note = await repo.get(credit_note_id)
                assert note is not None, credit_note_id
                after = None if reported is None else refund_moved(note.status, reported)
                if after is None:
                    await repo.note_refund(credit_note_id, made.refund_id)
                    break
                if await repo.move(
                    credit_note_id,
                    note.status,
                    after,
                    refund_id=made.refund_id,
                    failure=made.failure if after is RefundStatus.FAILED else None,
                    now=self._clock(),
                ):
                    break
            found = await repo.get(credit_note_id)
        assert found is not None
        return found

    async def verify(self) -> list[str]:
        """Check credit notes against the invoices they credit (`rules.credit_disagreements`;
        Stripe is not asked): each disagreement in words, none when all hold."""
        async with self._tx.read() as unit:
            notes = await CreditNoteRepository(unit).every()
            named = {note.invoice_id for note in notes}
            invoices = await self._invoices.credited(unit)
            named -= {invoice.invoice_id for invoice in invoices}
            for invoice_id in sorted(named):
                try:
                    invoices.append(await self._invoices.get(invoice_id, uow=unit))
                except NotFound:
                    continue  # said by the check
            found = credit_disagreements([_credited(i) for i in invoices], notes)
            for note in notes:
                if note.status is not RefundStatus.BALANCE:
                    continue
                grant = await self._credits.grant_of(note.credit_note_id, unit)
                if grant is None or (grant.amount, grant.currency) != (note.amount, note.currency):
                    found.append(
                        f"{note.number} is kept as a balance of {note.currency} {note.amount}, "
                        f"and the org holds {'no grant' if grant is None else 'another'} for it"
                    )
        return found

    async def reconcile(
        self, since: datetime, *, repair: bool = False
    ) -> tuple[list[Difference], list[Difference]]:
        """Compare each credit note made since `since` with its refund at Stripe: what
        differs, and (`repair`) what was mended by applying Stripe's record of a refund's
        outcome. Amounts that differ, or a refund the kernel has made that Stripe has not,
        are for a person."""
        stripe = self._gateway
        if stripe is None:
            return [], []
        async with self._tx.read() as unit:
            notes = await CreditNoteRepository(unit).made_since(since)
        found: list[Difference] = []
        repaired: list[Difference] = []
        for note in notes:
            if note.status is RefundStatus.BALANCE:
                continue  # kept, not refunded: nothing at Stripe to compare
            subject = f"{note.number} ({note.credit_note_id}, invoice {note.invoice_id})"
            if note.stripe_refund_id is not None:
                theirs: RefundMade | None = await stripe.refund_now(note.stripe_refund_id)
            else:
                paid = await self._payment_of(note)
                intent = None if paid is None else paid.stripe_payment_intent_id
                theirs = (
                    None
                    if intent is None
                    else await stripe.find_refund(intent, note.credit_note_id)
                )
            if theirs is None:
                if note.status is RefundStatus.REFUNDED:
                    found.append(
                        Difference(
                            subject,
                            "refunded here, Stripe has no refund for it",
                            "look for it in Stripe's dashboard",
                        )
                    )
                continue
            if (theirs.amount, theirs.currency) != (note.amount, note.currency.upper()):
                found.append(
                    Difference(
                        subject,
                        f"the kernel credited {note.currency} {note.amount}, Stripe refunded "
                        f"{theirs.currency} {theirs.amount}",
                        "refund or charge the difference in Stripe",
                    )
                )
            reported = (
                None
                if theirs.succeeded is None
                else (RefundStatus.REFUNDED if theirs.succeeded else RefundStatus.FAILED)
            )
            if reported is not None and refund_moved(note.status, reported) is not None:
                drift = Difference(
                    subject,
                    f"Stripe has the refund {reported.value}, the kernel {note.status.value}",
                    "--repair applies it",
                )
                if repair:
                    await self.settle(note.credit_note_id, theirs)
                    repaired.append(drift)
                else:
                    found.append(drift)
        return found, repaired


def _billed(invoice: StoredInvoice) -> list[BilledLine]:
    return [BilledLine(line.number, line.description, line.amount) for line in invoice.lines]


def _credited(invoice: StoredInvoice) -> CreditedInvoice:
    return CreditedInvoice(
        invoice.invoice_id,
        invoice.number,
        invoice.status,
        invoice.total,
        invoice.credited,
        invoice.paid_by,
        tuple(_billed(invoice)),
    )
