"""An org's subscription as it lives: its plan (moved now, or scheduled for later), its
billing status, the currency rule, and the history every change adds to. Reading an org's
billing state here makes a scheduled change that is due take effect first, so every reader
(quota, summary, invoices, plan changes) sees the plan in force."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing_kernel.alerts.service import AlertService
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import ReadOnlyUnit, Transactions, UnitOfWork
from billing_kernel.errors import CurrencyChange
from billing_kernel.orgs.rules import BillingStatus, OrgBillingState, billable
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.subscriptions.repository import SubscriptionRepository
from billing_kernel.subscriptions.rules import ScheduledChange


class SubscriptionService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        *,
        plans: PlanService,
        orgs: OrgService,
        alerts: AlertService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._plans = plans
        self._orgs = orgs
        self._alerts = alerts

    async def billing_state(self, org_id: str, uow: UnitOfWork | None = None) -> OrgBillingState:
        """The org's billing state, seeded on first use (default plan, in trial), after any
        scheduled change that is due; OrgNotFound for an org that does not exist. In a
        read-only unit of work, ReadOnlyUnit when it would have to be seeded or changed."""
        if uow is not None and not uow.writable:
            return await self._apply_due(uow, await self._orgs.seeded_state(org_id, uow))
        async with self._tx.begin(uow) as unit:
            return await self._apply_due(unit, await self._orgs.seeded_state(org_id, unit))

    async def hold_billing_state(self, org_id: str, uow: UnitOfWork) -> None:
        """Hold the org's billing state (seeded first, on first use) until `uow` ends, so
        that its plan changes one transaction at a time (as the org's members may make them,
        under row-level security): what `uow` reads of it after this is what it changes."""
        await self.billing_state(org_id, uow)
        await SubscriptionRepository(uow).lock_billing_state(org_id)

    async def subscribe(
        self,
        org_id: str,
        *,
        plan_slug: str | None = None,
        status: BillingStatus | None = None,
        uow: UnitOfWork | None = None,
    ) -> OrgBillingState:
        """The org on the active plan `plan_slug` at its current version and in `status`,
        changing only what differs (an org already on them keeps its scheduled change):
        what `PUT /api/v1/orgs/{org_id}` asks for."""
        async with self._tx.begin(uow) as unit:
            state = await self.billing_state(org_id, unit)
            if plan_slug:
                plan = await self._plans.get_active(plan_slug, unit)
                if (state.plan_slug, state.plan_version) != (plan.slug, plan.version):
                    state = await self._move(unit, org_id, plan)
            if status is not None and state.status is not status:
                state = await self.set_status(org_id, status, unit)
            return state

    async def set_plan(
        self,
        org_id: str,
        plan_slug: str,
        uow: UnitOfWork | None = None,
        *,
        since: datetime | None = None,
    ) -> OrgBillingState:
        """Move the org to an active plan, at its current version (the same plan again moves
        an org on an older version to the current one), billed from `since` (default now;
        see `last_change`); an unknown or inactive plan is refused."""
        async with self._tx.begin(uow) as unit:
            plan = await self._plans.get_active(plan_slug, unit)
            await self.billing_state(org_id, unit)
            return await self._move(unit, org_id, plan, since=since)

    async def last_change(self, org_id: str, uow: UnitOfWork | None = None) -> datetime | None:
        """When the org's plan or status last changed (its subscription history's latest)."""
        async with self._tx.read(uow) as unit:
            return await SubscriptionRepository(unit).last_change(org_id)

    async def _move(
        self,
        unit: UnitOfWork,
        org_id: str,
        plan: Plan,
        *,
        since: datetime | None = None,
    ) -> OrgBillingState:
        """The org on `plan` (from `since`, default now: its subscription history says so),
        any change it had scheduled dropped, its alerts reevaluated under the plan's limits
        in the same transaction (an upgrade resolves the thresholds usage is now under)."""
        subscriptions, now = SubscriptionRepository(unit), self._clock()
        before = await self._orgs.seeded_state(org_id, unit)
        current = await self._plans.get(before.plan_slug, unit, version=before.plan_version)
        await self.check_currency(before, current, plan, unit)
        await subscriptions.set_plan(org_id, plan.slug, plan.version, now)
        await subscriptions.cancel_scheduled(org_id)
        if (before.plan_slug, before.plan_version) != (plan.slug, plan.version):
            await subscriptions.record_history(org_id, since or now)
        await self._alerts.reevaluate(org_id, unit)
        return await self._orgs.seeded_state(org_id, unit)

    async def check_currency(
        self, state: OrgBillingState, current: Plan, plan: Plan, unit: UnitOfWork
    ) -> None:
        """CurrencyChange if moving the org to `plan` would bill one period in two
        currencies: it is billed now in `current`'s, or was billed in another earlier this
        period (a trial or canceled org that was never billed this period may move)."""
        if plan.currency == current.currency:
            return  # no second currency
        since = BillingPeriod.containing(self._clock()).start
        billed = await SubscriptionRepository(unit).billed_currencies(state.org_id, since)
        if billable(state.status):
            billed.add(current.currency)
        other = sorted(billed - {plan.currency})
        if other:
            raise CurrencyChange(
                f"org {state.org_id!r} is billed in {other[0]} this period; plan "
                f"{plan.slug!r} is in {plan.currency}. Move it in a period it is not billed "
                "in (in trial, or canceled, from the period's start)",
                org_id=state.org_id,
                plan_slug=plan.slug,
            )

    async def scheduled_change(
        self, org_id: str, uow: UnitOfWork | None = None
    ) -> ScheduledChange | None:
        """The plan change the org has scheduled (a downgrade at its period's end), if any."""
        async with self._tx.join(uow) as unit:
            await self.billing_state(org_id, unit)
            return await SubscriptionRepository(unit).scheduled_change(org_id)

    async def schedule_change(
        self, org_id: str, plan: Plan, effective_at: datetime, uow: UnitOfWork | None = None
    ) -> ScheduledChange:
        """Move the org to `plan` (at its current version) at `effective_at`, replacing any
        change it had scheduled; until then it stays as it is."""
        async with self._tx.begin(uow) as unit:
            await self.billing_state(org_id, unit)
            change = ScheduledChange(plan.slug, plan.version, effective_at, self._clock())
            await SubscriptionRepository(unit).schedule_change(org_id, change)
            return change

    async def cancel_scheduled(self, org_id: str, uow: UnitOfWork | None = None) -> bool:
        """Drop the org's scheduled change; whether it had one."""
        async with self._tx.begin(uow) as unit:
            await self.billing_state(org_id, unit)
            return await SubscriptionRepository(unit).cancel_scheduled(org_id)

    async def apply_due_changes(self, uow: UnitOfWork | None = None) -> int:
        """Make every scheduled change that is due take effect (the worker does, every
        BILLING_CLOSE_INTERVAL_SECONDS; an org's own reads and changes do first); how many."""
        async with self._tx.read(uow) as unit:
            due = await SubscriptionRepository(unit).orgs_with_changes_due(self._clock())
        for org_id in due:
            await self.billing_state(org_id, uow)
        return len(due)

    async def _apply_due(self, unit: UnitOfWork, state: OrgBillingState) -> OrgBillingState:
        """`state`, after the org's scheduled change if it is due: recorded in the history
        from the moment it was due, so the period it ends is billed as it was."""
        subscriptions = SubscriptionRepository(unit)
        change = await subscriptions.scheduled_change(state.org_id)
        if change is None or change.effective_at > self._clock():
            return state
        if not unit.writable:
            raise ReadOnlyUnit(f"{state.org_id}'s scheduled change is due: it is applied first")
        await self._orgs.lock(state.org_id, unit)  # then again: another may have applied it
        change = await subscriptions.scheduled_change(state.org_id)
        if change is None:
            return await self._orgs.seeded_state(state.org_id, unit)
        plan = await self._plans.get(change.plan_slug, unit, version=change.plan_version)
        return await self._move(unit, state.org_id, plan, since=change.effective_at)

    async def set_status(
        self, org_id: str, status: BillingStatus, uow: UnitOfWork | None = None
    ) -> OrgBillingState:
        """Put the org in a billing status: what the product's payments say of it (`active`
        once it pays, `past_due` when a payment fails, `canceled`). Quota decisions follow at
        once: see `quota.rules.standing`. The time it changed is kept as `status_since`."""
        async with self._tx.begin(uow) as unit:
            before = await self.billing_state(org_id, unit)
            subscriptions, now = SubscriptionRepository(unit), self._clock()
            await subscriptions.set_status(org_id, BillingStatus(status), now)
            if before.status is not BillingStatus(status):
                await subscriptions.record_history(org_id, now)
            return await self._orgs.seeded_state(org_id, unit)
