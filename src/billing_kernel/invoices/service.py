"""Invoices: the upcoming one, recomputed on every read from what the org was on and what it
used (see `rules`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.invoices.repository import InvoiceRepository
from billing_kernel.invoices.rules import InvoiceDraft, Subscription, billable, draft_invoice
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.summary.service import SummaryService


class InvoiceService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        plans: PlanService,
        summary: SummaryService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._plans = plans
        self._summary = summary

    async def upcoming(self, org_id: str, uow: UnitOfWork | None = None) -> InvoiceDraft:
        """The org's invoice for the current period as it stands now (a draft): the fees of
        the plans it has been on this period, and its usage so far priced by the plan it is
        on. OrgNotFound for an unknown org."""
        period = BillingPeriod.containing(self._clock())
        async with self._tx.begin(uow) as unit:
            summary = await self._summary.summary(org_id, unit)
            plans: dict[tuple[str, int], Plan] = {}
            history = []
            for since, slug, version, status in await InvoiceRepository(unit).history(
                org_id, period.end
            ):
                if (slug, version) not in plans:
                    plans[slug, version] = await self._plans.get(slug, unit, version=version)
                history.append(Subscription(since, plans[slug, version], billable(status)))
        if not history:  # an org whose state predates its history: on its plan since then
            state = summary.state
            history = [Subscription(state.created_at, summary.plan, billable(state.status))]
        return draft_invoice(
            org_id,
            period,
            history,
            [line.metric for line in summary.usage],
            {
                line.metric.key: line.used if line.peak is None else line.peak
                for line in summary.usage
            },
            {line.metric.key: line.limit for line in summary.usage},
        )
