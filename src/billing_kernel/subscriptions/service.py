"""An org's own plan changes (its owners and admins, or the product's backend): previewed
with exactly the invoice lines they will make, then made by the same code. Upgrades take
effect at once; downgrades at the period's end (BILLING_DOWNGRADE), as a scheduled change
that can be canceled until then."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from billing_kernel.common.periods import BillingPeriod, ensure_utc
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import PreviewStale
from billing_kernel.invoices.rules import InvoiceDraft, InvoiceLine, Subscription
from billing_kernel.invoices.service import InvoiceService
from billing_kernel.orgs.rules import OrgBillingState, ScheduledChange, billable
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.subscriptions.rules import ChangeKind, classify, takes_effect

PREVIEW_VALID = timedelta(minutes=10)
"""How long a preview's moment may be confirmed at (`change(..., at=)`)."""


@dataclass(frozen=True, slots=True)
class PlanChange:
    """A move of an org to another plan, as previewed or as made."""

    kind: ChangeKind
    current: Plan
    plan: Plan
    effective_at: datetime
    scheduled: bool
    """It takes effect at `effective_at`, a later moment (a downgrade at the period's end)."""
    lines: tuple[InvoiceLine, ...]
    """What it adds to the upcoming invoice (none for a scheduled change)."""
    upcoming_before: InvoiceDraft
    upcoming_after: InvoiceDraft
    """The upcoming invoice as it is, and as it will be: usage is priced by the plan in
    force at the period's end."""
    state: OrgBillingState


class SubscriptionService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        plans: PlanService,
        orgs: OrgService,
        invoices: InvoiceService,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._plans = plans
        self._orgs = orgs
        self._invoices = invoices

    async def preview(
        self, org_id: str, plan_slug: str, uow: UnitOfWork | None = None
    ) -> PlanChange:
        """What moving the org to the active plan `plan_slug` would do now, to the cent:
        `change` makes exactly this. Nothing is written (but a state seeded on first use)."""
        async with self._tx.begin(uow) as unit:
            return await self._decide(org_id, plan_slug, unit)

    async def change(
        self,
        org_id: str,
        plan_slug: str,
        uow: UnitOfWork | None = None,
        *,
        at: datetime | None = None,
    ) -> PlanChange:
        """Move the org to the active plan `plan_slug`: an upgrade (or a move at the same
        price) at once, a downgrade at the period's end unless BILLING_DOWNGRADE=immediate.
        The lines it adds to the upcoming invoice are those `preview` gave; given the
        preview's moment `at` (its `effective_at`, at most PREVIEW_VALID old, in this
        period, with no change of the org's since), to the cent, however long the user took
        to confirm. The same plan again changes nothing (an org on an older version moves
        to the current one)."""
        async with self._tx.begin(uow) as unit:
            now = await self._moment(org_id, at, unit)
            decided = await self._decide(org_id, plan_slug, unit, now)
            if decided.scheduled:
                await self._orgs.schedule_change(org_id, decided.plan, decided.effective_at, unit)
                state = await self._orgs.billing_state(org_id, unit)
            elif decided.kind is ChangeKind.NONE:
                await self._orgs.cancel_scheduled(org_id, unit)  # staying: no move later
                state = decided.state
            else:
                state = await self._orgs.set_plan(org_id, plan_slug, unit, since=now)
            return replace(decided, state=state)

    async def _moment(self, org_id: str, at: datetime | None, unit: UnitOfWork) -> datetime:
        """When a change confirmed now takes effect: now, or the preview's moment `at`."""
        now = self._clock()
        if at is None:
            return now
        at = ensure_utc(at)
        last = await self._orgs.last_change(org_id, unit)
        if (
            not now - PREVIEW_VALID <= at <= now
            or BillingPeriod.containing(at) != BillingPeriod.containing(now)
            or (last is not None and last > at)
        ):
            raise PreviewStale(
                "this preview no longer holds (it is over ten minutes old, from another "
                "period, or the org has changed since): preview the change again",
                at=at.isoformat(),
            )
        return at

    async def scheduled(self, org_id: str, uow: UnitOfWork | None = None) -> ScheduledChange | None:
        """The org's scheduled change, if any."""
        return await self._orgs.scheduled_change(org_id, uow)

    async def cancel(self, org_id: str, uow: UnitOfWork | None = None) -> bool:
        """Drop the org's scheduled change; whether it had one."""
        return await self._orgs.cancel_scheduled(org_id, uow)

    async def _decide(
        self, org_id: str, plan_slug: str, unit: UnitOfWork, now: datetime | None = None
    ) -> PlanChange:
        plan = await self._plans.get_active(plan_slug, unit)
        state = await self._orgs.billing_state(org_id, unit)
        current = await self._plans.get(state.plan_slug, unit, version=state.plan_version)
        kind = classify(current, plan)
        now = now or self._clock()
        effective_at = takes_effect(kind, now, self._settings.downgrade)
        before = await self._invoices.upcoming(org_id, unit)
        if kind is ChangeKind.NONE or effective_at > now:
            return PlanChange(
                kind, current, plan, effective_at, effective_at > now, (), before, before, state
            )
        self._orgs.check_currency(state, current, plan)
        move = Subscription(now, plan, billable(state.status))
        lines = await self._invoices.change_lines(org_id, move, unit)
        after = await self._invoices.upcoming(org_id, unit, change=move)
        return PlanChange(kind, current, plan, now, False, lines, before, after, state)
