"""Verifying invoices: each one that counts, recomputed from the events it billed, the plan
versions, the subscription history and the limits it recorded, is what it was; the numbers,
void ones included, have no gaps; an invoice's status agrees with its payment and void times."""

from __future__ import annotations

from dataclasses import asdict

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.invoices.repository import InvoiceRepository
from billing_kernel.invoices.rules import StoredInvoice, StoredLine, usage_of
from billing_kernel.invoices.service.drafting import InvoiceDrafts, stored_line
from billing_kernel.metrics.rules import Aggregation
from billing_kernel.metrics.service import MetricService


class InvoiceVerification:
    def __init__(
        self, transactions: Transactions, metrics: MetricService, drafts: InvoiceDrafts
    ) -> None:
        self._tx = transactions
        self._metrics = metrics
        self._drafts = drafts

    async def verify(self, uow: UnitOfWork | None = None) -> list[str]:
        """Recompute every invoice that counts (open or paid) from the events it billed, the
        plan versions, the subscription history and the limits it recorded, and check that
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
            ids = await repo.all_invoice_ids()
            for expected, invoice_id in enumerate(ids, 1):
                invoice = await repo.get(invoice_id)
                assert invoice is not None
                if invoice.sequence != expected:
                    differences.append(
                        f"{invoice.number}: numbered {invoice.sequence}, "
                        f"{expected} expected (a gap)"
                    )
                if invoice.status != "void":  # a void one's events moved to its correction
                    differences += await self._differences(invoice, unit)
        return differences

    async def _differences(self, invoice: StoredInvoice, unit: UnitOfWork) -> list[str]:
        period = BillingPeriod.starting(invoice.period_start)
        repo = InvoiceRepository(unit)
        events = await repo.billed_events(invoice.invoice_id, await self._drafts.latest(unit))
        catalogue = await self._metrics.catalogue(unit)
        used = usage_of(period, events, {m.key: m for m in catalogue})
        seats = {m.key for m in catalogue if m.aggregation is Aggregation.SEATS}
        used.update(
            {
                u.metric: u.quantity
                for u in invoice.usage
                if u.period_start == period.key and u.metric in seats
            }
        )
        late = {key: b for key, b in events.items() if key[0] < period.key}
        history = await self._drafts.history(invoice.org_id, period, unit)
        computed = await self._drafts.compute(
            invoice.org_id, period, history, used, late, unit, events=events, as_of=invoice
        )
        # Every figure, not the wording: a plan or metric renamed since changes descriptions.
        stored = [_figures(line) for line in invoice.lines]
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
        if invoice.total != computed.draft.total:
            found.append(
                f"{invoice.number}: total {invoice.total} stored, {computed.draft.total} recomputed"
            )
        return found


def _figures(line: StoredLine) -> dict[str, object]:
    """What verification compares of a line: every figure, not its wording."""
    return {name: value for name, value in asdict(line).items() if name != "description"}
