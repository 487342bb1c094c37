"""Orgs: who they are, the other names they go by, and their admission (created on first
touch, on the default plan, in trial). How their subscription changes is `subscriptions/`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from billing_kernel.common.validation import validate_id, validate_text
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import AliasTaken, NoDefaultPlan, OrgNotFound
from billing_kernel.orgs.repository import OrgRepository
from billing_kernel.orgs.rules import (
    Admission,
    BillingStatus,
    Org,
    OrgBillingState,
    OrgOrigin,
    new_trial_state,
    validate_aliases,
)
from billing_kernel.plans.service import PlanService

MAX_NAME_LENGTH = 200


class OrgService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        plans: PlanService,
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._clock = clock
        self._plans = plans

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
            return await self._save(unit, org_id, name, plan_slug, created_via)

    async def _save(
        self,
        unit: UnitOfWork,
        org_id: str,
        name: str | None,
        plan_slug: str | None,
        created_via: OrgOrigin,
    ) -> OrgBillingState:
        """Create or rename the org and seed its state (on `plan_slug`, else the default plan)
        if it has none."""
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
        return await self._require_state(unit, org_id)

    async def get(self, org_id: str, uow: UnitOfWork | None = None) -> Org:
        """The org and its billing state (seeded if missing); OrgNotFound if there is none."""
        async with self._tx.join(uow) as unit:
            await self.seeded_state(org_id, unit)
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

    async def seeded_state(self, org_id: str, uow: UnitOfWork | None = None) -> OrgBillingState:
        """The org's billing state as stored, seeded on first use (default plan, in trial);
        OrgNotFound for an org that does not exist. Readers want
        `SubscriptionService.billing_state`: the same, after a scheduled change that is due.
        In a read-only unit of work, ReadOnlyUnit when it would have to be seeded."""
        if uow is not None and not uow.writable:
            state = await OrgRepository(uow).get_billing_state(org_id)
            if state is not None:
                return state
        async with self._tx.begin(uow) as unit:
            orgs = OrgRepository(unit)
            state = await orgs.get_billing_state(org_id)
            if state is not None:
                return state
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
        try:
            plan = await self._plans.default(uow)
        except NoDefaultPlan as exc:
            return Admission(created=frozenset(), unknown=frozenset(missing), no_default=exc)
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
