"""Backtesting a plan: a draft of its terms priced against a closed month's recorded usage
of the orgs it invoiced (or of some orgs), by the code that verifies invoices, so that the
current version reproduces every invoice exactly. Nothing is written; it reads where reads
may lag (the replica, when one is set)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import InvalidInput
from billing_kernel.invoices.repository import InvoiceRepository
from billing_kernel.invoices.rules import Backtest, BacktestRow, require_closed
from billing_kernel.invoices.service.drafting import InvoiceDrafts
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.usage.service.history import UsageReader


class PlanBacktests:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        grace: timedelta,
        *,
        plans: PlanService,
        drafts: InvoiceDrafts,
        usage: UsageReader,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._grace = grace
        self._plans = plans
        self._drafts = drafts
        self._usage = usage

    async def backtest(
        self,
        draft: Plan,
        period: BillingPeriod,
        org_ids: Collection[str] | None = None,
        uow: UnitOfWork | None = None,
    ) -> Backtest:
        """What `draft` (the plan's terms, checked as an update would check them) would have
        invoiced for `period`, a closed month, against what was invoiced: for every org the
        plan invoiced then, or for `org_ids` (whatever plan invoiced them: the draft stands
        in for its plan only where the org was on it). PlanNotFound for a plan that does not
        exist; InvalidInput for a draft in another currency; PeriodNotClosed before the
        month closes."""
        require_closed(period, self._grace, self._clock(), ": it has no invoices yet")
        async with self._tx.read(uow) as unit:
            current = await self._plans.get(draft.slug, unit)
            if draft.currency != current.currency:
                raise InvalidInput(
                    f"the draft is in {draft.currency}; plan {draft.slug!r} bills in "
                    f"{current.currency}, and a backtest compares in it",
                    field="currency",
                )
            await self._plans.check(draft, unit)
            forgotten = await self._usage.forgotten_months(unit)
            invoices = await InvoiceRepository(unit).counted_of_period(
                period.key,
                plan_slug=draft.slug if org_ids is None else None,
                org_ids=org_ids,
            )
            rows: list[BacktestRow] = []
            plans: dict[tuple[str, int], Plan] = {}  # versions never change: read each once
            for invoice in invoices:
                computed = await self._drafts.recompute(
                    invoice, forgotten, unit, draft=draft, plans=plans
                )
                rows.append(
                    BacktestRow(
                        org_id=invoice.org_id,
                        invoice_number=invoice.number,
                        plan_version=invoice.plan_version,
                        invoiced=invoice.total + invoice.balance_applied,
                        draft=computed.draft,
                    )
                )
        return Backtest(draft.slug, period, current.currency, tuple(rows))
