"""Verifying invoices: each one that counts, recomputed from the events it billed, the plan
versions, the subscription history and the limits it recorded, is what it was; the numbers,
void ones included, have no gaps; an invoice's status agrees with its payment and void times;
its discounts are what the coupons applied to the org when it was made take off it, and each
coupon counts the orgs it was applied to.
For a month whose events are forgotten (BILLING_EVENT_RETENTION_MONTHS), an invoice is
recomputed from the usage it recorded of that month instead: its pricing is still checked,
but no longer that the usage it recorded is what the events came to."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from decimal import Decimal

from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.credits.service import CreditService
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.discounts.service import DiscountService
from billing_kernel.invoices.repository import InvoiceRepository
from billing_kernel.invoices.rules import LineKind, StoredInvoice, StoredLine
from billing_kernel.invoices.service.drafting import InvoiceDrafts, stored_line
from billing_kernel.metrics.service import MetricService
from billing_kernel.plans.rules import Plan
from billing_kernel.usage.service.history import UsageReader


class InvoiceVerification:
    def __init__(
        self,
        transactions: Transactions,
        metrics: MetricService,
        drafts: InvoiceDrafts,
        credits: CreditService,
        usage: UsageReader,
        discounts: DiscountService,
    ) -> None:
        self._tx = transactions
        self._metrics = metrics
        self._drafts = drafts
        self._credits = credits
        self._usage = usage
        self._discounts = discounts

    async def verify(self, uow: UnitOfWork | None = None) -> list[str]:
        """Recompute every invoice that counts (open or paid) from the events it billed (for
        a forgotten month, the usage it recorded), the plan versions, the subscription
        history and the limits it recorded, and check that
        the numbers, void ones included, have no gaps: every difference found, in words
        (none: the invoices are reproducible)."""
        differences: list[str] = []
        async with self._tx.read(uow) as unit:
            repo = InvoiceRepository(unit)
            for number, status, paid, voided in await repo.status_disagreements():
                differences.append(
                    f"{number}: {status}, but "
                    f"{'with' if paid else 'without'} a payment time and "
                    f"{'with' if voided else 'without'} a void time"
                )
            forgotten = await self._usage.forgotten_months(unit)
            ids = await repo.all_invoice_ids()
            plans: dict[tuple[str, int], Plan] = {}  # versions never change: read each once
            for expected, invoice_id in enumerate(ids, 1):
                invoice = await repo.get(invoice_id)
                assert invoice is not None
                if invoice.sequence != expected:
                    differences.append(
                        f"{invoice.number}: numbered {invoice.sequence}, "
                        f"{expected} expected (a gap)"
                    )
                if invoice.status != "void":  # a void one's events moved to its correction
                    differences += await self._differences(invoice, forgotten, plans, unit)
                differences += await self._credit_differences(invoice, unit)
            differences += await self._credits.verify(unit)
            differences += await self._discounts.verify(unit)
        return differences

    async def _differences(
        self,
        invoice: StoredInvoice,
        forgotten: set[date],
        plans: dict[tuple[str, int], Plan],
        unit: UnitOfWork,
    ) -> list[str]:
        """How the invoice differs from itself recomputed: from the lines it billed, and for
        the months whose lines are `forgotten`, from the usage it recorded of them."""
        period = BillingPeriod.starting(invoice.period_start)
        computed = await self._drafts.recompute(invoice, forgotten, unit, plans=plans)
        # Every figure, not the wording: a plan or metric renamed since changes descriptions.
        # A credit balance applied is checked against what the invoice drew (below).
        charged = [line for line in invoice.lines if line.kind != LineKind.CREDIT_APPLIED]
        stored = [_figures(line) for line in charged]
        again = [
            _figures(stored_line(n, line, period)) for n, line in enumerate(computed.draft.lines, 1)
        ]
        found = []
        for before, after in zip(stored, again, strict=False):
            if before != after:
                found.append(
                    f"{invoice.number} line {before['number']}: stored {before}, recomputed {after}"
                )
        if len(stored) != len(again):
            found.append(f"{invoice.number}: {len(stored)} lines stored, {len(again)} recomputed")
        again_total = computed.draft.total - invoice.balance_applied
        if invoice.total != again_total:
            found.append(
                f"{invoice.number}: total {invoice.total} stored, {again_total} recomputed"
            )
        return found

    async def _credit_differences(self, invoice: StoredInvoice, unit: UnitOfWork) -> list[str]:
        """An invoice's credit balance applied is what it drew from the org's grants, and a
        void one holds none (it was given back to its correction)."""
        burns = await self._credits.burns([invoice.invoice_id], unit)
        held = sum((b.amount for b in burns if b.released_at is None), Decimal(0))
        if invoice.status == "void":
            return (
                [f"{invoice.number}: void, and still holds {money_text(held)} of credit"]
                if held
                else []
            )
        if held != invoice.balance_applied:
            return [
                f"{invoice.number}: {money_text(invoice.balance_applied)} of credit applied, "
                f"{money_text(held)} drawn from the org's balance"
            ]
        return []


def _figures(line: StoredLine) -> dict[str, object]:
    """What verification compares of a line: every figure, not its wording."""
    return {name: value for name, value in asdict(line).items() if name != "description"}
