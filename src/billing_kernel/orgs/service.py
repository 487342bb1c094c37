"""Orgs and their billing state: created on first touch, on the default plan, in trial."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from billing_kernel.alerts.service import AlertService
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import validate_id, validate_text
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import AliasTaken, CurrencyChange, OrgNotFound
from billing_kernel.orgs.repository import OrgRepository
from billing_kernel.orgs.rules import (
    Admission,
    BillingStatus,
    Org,
    OrgBillingState,
    OrgOrigin,
    ScheduledChange,
    billable,
    new_trial_state,
    validate_aliases,
)
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService

MAX_NAME_LENGTH = 200


class OrgService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        plans: PlanService,
        alerts: AlertService,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._plans = plans
        self._alerts = alerts

    async def create(
        self,
        org_id: str,
        *,
        name: str | None = None,
        plan_slug: str | None = None,
        created_via: OrgOrigin = OrgOrigin.API,
        uow: UnitOfWork | None = None,
    ) -> OrgBillingState:
        """Create the org (or rename it) and seed its billing state if it has none; an
        existing state, plan included, is kept."""
        async with self._tx.begin(uow) as unit:
            state, _ = await self._save(unit, org_id, name, plan_slug, created_via)
            return state

    async def put(
        self,
        org_id: str,
        *,
        name: str | None = None,
        plan_slug: str | None = None,
        status: BillingStatus | None = None,
        uow: UnitOfWork | None = None,
    ) -> OrgBillingState:
        """Create or update the org: its name, its plan when `plan_slug` is given, and its
        billing status when `status` is (see `set_status`)."""
        async with self._tx.begin(uow) as unit:
            state, plan = await self._save(unit, org_id, name, plan_slug, OrgOrigin.API)
            if plan_slug and (state.plan_slug, state.plan_version) != (plan.slug, plan.version):
                state = await self._move(unit, org_id, plan)
            if status is not None and state.status is not status:
                state = await self.set_status(org_id, status, unit)
            return state

    async def _save(
        self,
        unit: UnitOfWork,
        org_id: str,
        name: str | None,
        plan_slug: str | None,
        created_via: OrgOrigin,
    ) -> tuple[OrgBillingState, Plan]:
        """Create or rename the org and seed its state (on `plan_slug`, else the default plan)
        if it has none; the state and the plan asked for."""
        validate_id(org_id, "org_id")
        now = self._clock()
        plan = await (
            self._plans.get_active(plan_slug, unit) if plan_slug else self._plans.default(unit)
        )
        orgs = OrgRepository(unit)
        await orgs.save_org(org_id, validate_text(name, "name", MAX_NAME_LENGTH), now, created_via)
        await orgs.seed_billing_states(
            [new_trial_state(org_id, plan.slug, now, self._settings.trial_days, plan.version)]
        )
        return await self._require_state(unit, org_id), plan

    async def get(self, org_id: str, uow: UnitOfWork | None = None) -> Org:
        """The org and its billing state (seeded if missing); OrgNotFound if there is none."""
        async with self._tx.begin(uow) as unit:
            await self.billing_state(org_id, unit)
            org = await OrgRepository(unit).get_org(org_id)
            if org is None:  # only if the org vanished in between
                raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)
            return org

    async def list_orgs(
        self,
        *,
        after: str | None,
        limit: int,
        plan_slug: str | None = None,
        status: BillingStatus | None = None,
        only: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> list[Org]:
        """Up to `limit` orgs in id order after the id `after`, optionally only those on one
        plan, in one status, or the org `only` (for a key restricted to it)."""
        async with self._tx.read(uow) as unit:
            return await OrgRepository(unit).list_orgs(
                after=after, limit=limit, plan_slug=plan_slug, status=status, org_id=only
            )

    async def billing_state(self, org_id: str, uow: UnitOfWork | None = None) -> OrgBillingState:
        """The org's billing state, seeded on first use (default plan, in trial), after any
        scheduled change that is due; OrgNotFound for an org that does not exist."""
        async with self._tx.begin(uow) as unit:
            orgs = OrgRepository(unit)
            state = await orgs.get_billing_state(org_id)
            if state is not None:
                return await self._apply_due(unit, state)
            await self.require(org_id, unit)
            plan = await self._plans.default(unit)
            await orgs.seed_billing_states(
                [
                    new_trial_state(
                        org_id, plan.slug, self._clock(), self._settings.trial_days, plan.version
                    )
                ]
            )
            return await self._require_state(unit, org_id)

    async def hold_billing_state(self, org_id: str, uow: UnitOfWork) -> None:
        """Hold the org's billing state (seeded first, on first use) until `uow` ends, so
        that its plan changes one transaction at a time (as the org's members may make them,
        under row-level security): what `uow` reads of it after this is what it changes."""
        await self.billing_state(org_id, uow)
        await OrgRepository(uow).lock_billing_state(org_id)

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
            return await OrgRepository(unit).last_change(org_id)

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
        orgs, now = OrgRepository(unit), self._clock()
        before = await self._require_state(unit, org_id)
        current = await self._plans.get(before.plan_slug, unit, version=before.plan_version)
        await self.check_currency(before, current, plan, unit)
        await orgs.set_plan(org_id, plan.slug, plan.version, now)
        await orgs.cancel_scheduled(org_id)
        if (before.plan_slug, before.plan_version) != (plan.slug, plan.version):
            await orgs.record_history(org_id, since or now)
        await self._alerts.reevaluate(org_id, unit)
        return await self._require_state(unit, org_id)

    async def check_currency(
        self, state: OrgBillingState, current: Plan, plan: Plan, unit: UnitOfWork
    ) -> None:
        """CurrencyChange if moving the org to `plan` would bill one period in two
        currencies: it is billed now in `current`'s, or was billed in another earlier this
        period (a trial or canceled org that was never billed this period may move)."""
        if plan.currency == current.currency:
            return  # no second currency
        since = BillingPeriod.containing(self._clock()).start
        billed = await OrgRepository(unit).billed_currencies(state.org_id, since)
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
        async with self._tx.begin(uow) as unit:
            await self.billing_state(org_id, unit)
            return await OrgRepository(unit).scheduled_change(org_id)

    async def schedule_change(
        self, org_id: str, plan: Plan, effective_at: datetime, uow: UnitOfWork | None = None
    ) -> ScheduledChange:
        """Move the org to `plan` (at its current version) at `effective_at`, replacing any
        change it had scheduled; until then it stays as it is."""
        async with self._tx.begin(uow) as unit:
            await self.billing_state(org_id, unit)
            change = ScheduledChange(plan.slug, plan.version, effective_at, self._clock())
            await OrgRepository(unit).schedule_change(org_id, change)
            return change

    async def cancel_scheduled(self, org_id: str, uow: UnitOfWork | None = None) -> bool:
        """Drop the org's scheduled change; whether it had one."""
        async with self._tx.begin(uow) as unit:
            await self.billing_state(org_id, unit)
            return await OrgRepository(unit).cancel_scheduled(org_id)

    async def apply_due_changes(self, uow: UnitOfWork | None = None) -> int:
        """Make every scheduled change that is due take effect (the worker does, every
        BILLING_CLOSE_INTERVAL_SECONDS; an org's own reads and changes do first); how many."""
        async with self._tx.read(uow) as unit:
            due = await OrgRepository(unit).orgs_with_changes_due(self._clock())
        for org_id in due:
            await self.billing_state(org_id, uow)
        return len(due)

    async def _apply_due(self, unit: UnitOfWork, state: OrgBillingState) -> OrgBillingState:
        """`state`, after the org's scheduled change if it is due: recorded in the history
        from the moment it was due, so the period it ends is billed as it was."""
        orgs = OrgRepository(unit)
        change = await orgs.scheduled_change(state.org_id)
        if change is None or change.effective_at > self._clock():
            return state
        await orgs.lock_org(state.org_id)  # then again: another may have applied it meanwhile
        change = await orgs.scheduled_change(state.org_id)
        if change is None:
            return await self._require_state(unit, state.org_id)
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
            orgs, now = OrgRepository(unit), self._clock()
            await orgs.set_status(org_id, BillingStatus(status), now)
            if before.status is not BillingStatus(status):
                await orgs.record_history(org_id, now)
            return await self._require_state(unit, org_id)

    async def require(self, org_id: str, uow: UnitOfWork | None = None) -> None:
        """OrgNotFound unless the org exists."""
        async with self._tx.read(uow) as unit:
            if not await OrgRepository(unit).existing_org_ids([org_id]):
                raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)

    async def lock(self, org_id: str, uow: UnitOfWork) -> None:
        """Hold the org until `uow` ends, so that its members change one transaction at a
        time; OrgNotFound unless it exists."""
        if not await OrgRepository(uow).lock_org(org_id):
            raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)

    async def aliases(self, org_id: str, uow: UnitOfWork | None = None) -> list[str]:
        """The org's aliases, sorted; OrgNotFound for an unknown org."""
        async with self._tx.begin(uow) as unit:
            await self.require(org_id, unit)
            return await OrgRepository(unit).aliases_of(org_id)

    async def set_aliases(
        self, org_id: str, aliases: Iterable[object], uow: UnitOfWork | None = None
    ) -> list[str]:
        """Give the org exactly these aliases (other names it goes by, such as the customer
        id another billing system gave it). AliasTaken if one is another org's alias or id;
        OrgNotFound for an unknown org. Nothing changes on error."""
        wanted = validate_aliases(aliases)
        async with self._tx.begin(uow) as unit:
            await self.lock(org_id, unit)
            orgs = OrgRepository(unit)
            owners = await orgs.alias_owners(wanted)
            taken = sorted(a for a, owner in owners.items() if owner != org_id)
            taken += sorted((await orgs.existing_org_ids(wanted)) - {org_id})
            if not taken:
                taken = sorted(await orgs.replace_aliases(org_id, wanted, self._clock()))
            if taken:
                raise AliasTaken(
                    f"alias {taken[0]!r} already names another org", org_id=org_id, alias=taken[0]
                )
            return wanted

    async def names(self, org_id: str, uow: UnitOfWork) -> frozenset[str]:
        """Every name the org goes by: its id and its aliases (just the id for an org not
        created yet)."""
        return frozenset([org_id, *await OrgRepository(uow).aliases_of(org_id)])

    async def resolve(self, customer_ids: Iterable[str], uow: UnitOfWork) -> dict[str, str]:
        """The org each id names: the org it is an alias of, else the org of that id."""
        wanted = set(customer_ids)
        owners = await OrgRepository(uow).alias_owners(wanted) if wanted else {}
        return {customer: owners.get(customer, customer) for customer in wanted}

    async def admit(self, org_ids: set[str], now: datetime, uow: UnitOfWork) -> Admission:
        """Create and seed the orgs not seen before, if BILLING_AUTO_CREATE_ORGS allows:
        which were created by this call, and which are left unknown (usage for them is
        refused)."""
        orgs = OrgRepository(uow)
        missing = org_ids - await orgs.existing_org_ids(org_ids)
        if not missing or not self._settings.auto_create_orgs:
            return Admission(created=frozenset(), unknown=frozenset(missing))
        plan = await self._plans.default(uow)
        created = await orgs.ensure_orgs(missing, now, OrgOrigin.USAGE_EVENT)
        await orgs.seed_billing_states(
            new_trial_state(org_id, plan.slug, now, self._settings.trial_days, plan.version)
            for org_id in missing
        )
        return Admission(created=frozenset(created), unknown=frozenset())

    @staticmethod
    async def _require_state(unit: UnitOfWork, org_id: str) -> OrgBillingState:
        state = await OrgRepository(unit).get_billing_state(org_id)
        if state is None:  # only if the org vanished in between
            raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)
        return state
