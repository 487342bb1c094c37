"""An org's own plan changes (its owners and admins, or the product's backend): previewed
with exactly the invoice lines they will make, then made by the same code (through
`lifecycle.py`). Upgrades take effect at once; downgrades at the period's end
(BILLING_DOWNGRADE), as a scheduled change that can be canceled until then. This sits above
invoices and quota, which price and limit the change; the lifecycle sits below them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from billing_kernel.common.periods import BillingPeriod, ensure_utc
from billing_kernel.config import DowngradeTiming, Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import AmountOutOfBounds, PlanNotOffered, PreviewStale
from billing_kernel.invoices.rules import InvoiceDraft, InvoiceLine, Subscription
from billing_kernel.invoices.service import InvoiceService
from billing_kernel.orgs.rules import OrgBillingState, billable
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.service import QuotaService
from billing_kernel.subscriptions.rules import ChangeKind, classify, preview_token, takes_effect
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService

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
    token: str
    """What the preview priced, as a digest (see `rules.preview_token`): a confirmation
    given it makes exactly this change, or none."""


class PlanChangeService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        *,
        plans: PlanService,
        subscriptions: SubscriptionService,
        invoices: InvoiceService,
        quota: QuotaService,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._plans = plans
        self._subscriptions = subscriptions
        self._invoices = invoices
        self._quota = quota

    async def preview(
        self,
        org_id: str,
        plan_slug: str,
        uow: UnitOfWork | None = None,
        *,
        offered_only: bool = False,
    ) -> PlanChange:
        """What moving the org to the active plan `plan_slug` would do now, to the cent:
        `change` makes exactly this. Nothing is written (but a state seeded on first use).
        With `offered_only` (the org's own people asking), a private plan is PlanNotOffered."""
        async with self._tx.begin(uow) as unit:
            return await self._decide(org_id, plan_slug, unit, offered_only=offered_only)

    async def change(
        self,
        org_id: str,
        plan_slug: str,
        uow: UnitOfWork | None = None,
        *,
        at: datetime | None = None,
        token: str | None = None,
        offered_only: bool = False,
    ) -> PlanChange:
        """Move the org to the active plan `plan_slug`: an upgrade (or a move at the same
        price) at once, a downgrade at the period's end unless BILLING_DOWNGRADE=immediate.
        The lines it adds to the upcoming invoice are those `preview` gave; given the
        preview's moment `at` (its `effective_at`: at most PREVIEW_VALID old and in this
        period, or a scheduled change's moment) and its `token`, exactly that change or
        PreviewStale: a new version or price of either plan, a change of the org's plan,
        status, limit overrides or scheduled change since makes another. Confirmations of
        one org run one at a time. The same plan again changes nothing (an org on an older
        version moves to the current one). With `offered_only`, as `preview`."""
        if token is not None and at is None:  # now is not the moment the preview priced
            raise _stale("its token was given without at, the preview's effective_at")
        async with self._tx.begin(uow) as unit:
            await self._subscriptions.hold_billing_state(
                org_id, unit
            )  # confirmations: one at a time
            now = await self._moment(org_id, at, unit)
            decided = await self._decide(org_id, plan_slug, unit, now, offered_only=offered_only)
            if at is not None and at > now and decided.effective_at != at:
                raise _stale("it was to take effect at another moment")
            if token is not None and token != decided.token:
                raise _stale(
                    "what it priced has changed (a plan's price or version, or the org's "
                    "plan, status, limits or scheduled change)"
                )
            if decided.scheduled:
                await self._subscriptions.schedule_change(
                    org_id, decided.plan, decided.effective_at, unit
                )
                state = await self._subscriptions.billing_state(org_id, unit)
            elif decided.kind is ChangeKind.NONE:
                state = decided.state  # the plan it is on: nothing changes, nor is dropped
            else:
                state = await self._subscriptions.set_plan(org_id, plan_slug, unit, since=now)
            return replace(decided, state=state)

    async def _moment(self, org_id: str, at: datetime | None, unit: UnitOfWork) -> datetime:
        """When a change confirmed now is billed from: now, or the preview's moment `at`
        (a later `at`, a scheduled change's, is confirmed now)."""
        now = self._clock()
        if at is None:
            return now
        at = ensure_utc(at)
        if at > now:
            return now
        last = await self._subscriptions.last_change(org_id, unit)
        if (
            not now - PREVIEW_VALID <= at
            or BillingPeriod.containing(at) != BillingPeriod.containing(now)
            or (last is not None and last > at)
        ):
            raise _stale("it is over ten minutes old, from another period, or the org has changed")
        return at

    async def _decide(
        self,
        org_id: str,
        plan_slug: str,
        unit: UnitOfWork,
        now: datetime | None = None,
        *,
        offered_only: bool = False,
    ) -> PlanChange:
        plan = await self._plans.get_active(plan_slug, unit)
        state = await self._subscriptions.billing_state(org_id, unit)
        if offered_only and not plan.is_public and plan.slug != state.plan_slug:
            raise PlanNotOffered(
                f"plan {plan.slug!r} is not offered: it is assigned by the service's operator",
                plan_slug=plan.slug,
            )
        current = await self._plans.get(state.plan_slug, unit, version=state.plan_version)
        kind = classify(current, plan)
        now = now or self._clock()
        at_period_end = self._settings.downgrade is DowngradeTiming.PERIOD_END
        effective_at = takes_effect(kind, now, downgrade_at_period_end=at_period_end)
        before = await self._invoices.upcoming(org_id, unit)
        pending = await self._subscriptions.scheduled_change(org_id, unit)
        overrides = await self._quota.overrides(org_id, unit)

        def token(lines: tuple[InvoiceLine, ...]) -> str:
            return preview_token(
                org_id,
                kind,
                current,
                plan,
                effective_at,
                lines,
                state.status.value,
                None
                if pending is None
                else (pending.plan_slug, pending.plan_version, pending.effective_at),
                overrides,
            )

        if kind is ChangeKind.NONE or effective_at > now:
            scheduled = effective_at > now
            return PlanChange(
                kind, current, plan, effective_at, scheduled, (), before, before, state, token(())
            )
        await self._subscriptions.check_currency(state, current, plan, unit)
        move = Subscription(now, plan, billable(state.status))
        lines = await self._invoices.change_lines(org_id, move, unit)
        after = await self._invoices.upcoming(org_id, unit, change=move)
        if (beyond := after.out_of_bounds()) is not None:
            raise AmountOutOfBounds(
                f"{org_id} cannot move to {plan.slug} now: its invoice for "
                f"{after.period.label} could not be made ({beyond})",
                org_id=org_id,
                period=after.period.label,
            )
        return PlanChange(
            kind, current, plan, now, False, lines, before, after, state, token(lines)
        )


def _stale(why: str) -> PreviewStale:
    return PreviewStale(f"this preview no longer holds: {why}; preview the change again")
