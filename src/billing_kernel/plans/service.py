"""Plans: the ones on offer, the default for new orgs, and the one an org may move to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from billing_kernel.common.validation import validate_id, validate_text
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import (
    InvalidInput,
    MetricNotInPlan,
    NoDefaultPlan,
    PlanExists,
    PlanInactive,
    PlanIsDefault,
    PlanNotFound,
)
from billing_kernel.metrics.service import MetricService
from billing_kernel.plans.repository import PlanRepository
from billing_kernel.plans.rules import (
    Plan,
    Policy,
    prices_differ,
    validate_grace,
    validate_plan,
)


class PlanService:
    def __init__(
        self,
        transactions: Transactions,
        metrics: MetricService,
        clock: Callable[[], datetime],
    ) -> None:
        self._tx = transactions
        self._metrics = metrics
        self._clock = clock

    async def list_active(
        self, uow: UnitOfWork | None = None, *, offered: bool = False
    ) -> list[Plan]:
        """Active plans, cheapest first; with `offered`, only those offered to orgs (public),
        as an org's own view lists them."""
        async with self._tx.read(uow) as unit:
            return await PlanRepository(unit).list_plans(active_only=True, public_only=offered)

    async def get(
        self, slug: str, uow: UnitOfWork | None = None, *, version: int | None = None
    ) -> Plan:
        """The plan, active or not, at `version` (None: the current one, which new
        subscribers get); PlanNotFound if there is no such plan or version."""
        async with self._tx.read(uow) as unit:
            plan = await PlanRepository(unit).get_plan(slug, version)
        if plan is None:
            raise PlanNotFound(
                f"no plan with slug {slug!r}"
                if version is None
                else f"plan {slug!r} has no version {version}",
                plan_slug=slug,
            )
        return plan

    async def versions(self, slug: str, uow: UnitOfWork | None = None) -> list[Plan]:
        """Every version of the plan, oldest first; PlanNotFound if there is none."""
        async with self._tx.read(uow) as unit:
            current = await self.get(slug, unit)
            return [
                await self.get(slug, unit, version=number)
                for number, _ in await PlanRepository(unit).versions(slug)
                if number != current.version
            ] + [current]

    async def get_active(self, slug: str, uow: UnitOfWork | None = None) -> Plan:
        """The plan an org may be put on now: PlanNotFound, or PlanInactive for one that is
        no longer offered."""
        validate_id(slug, "plan_slug")
        plan = await self.get(slug, uow)
        if not plan.is_active:
            raise PlanInactive(f"plan {slug!r} is no longer offered", plan_slug=slug)
        return plan

    async def set_policy(
        self, slug: str, metric: str, policy: Policy, uow: UnitOfWork | None = None
    ) -> Plan:
        """Set how the plan enforces its limit of `metric` for every org on it (an org's own
        override of a part still wins). Returns the plan as it is now."""
        validate_grace(policy.grace_percent, policy.grace_period)
        async with self._tx.begin(uow) as unit:
            plan = await self.get(slug, unit)
            if metric not in plan.metrics:
                raise MetricNotInPlan(
                    f"plan {slug!r} has no terms for {metric!r}: it does not limit it",
                    plan_slug=slug,
                    metric=metric,
                )
            await PlanRepository(unit).set_policy(slug, metric, policy)
            return await self.get(slug, unit)

    async def create(
        self, plan: Plan, uow: UnitOfWork | None = None, *, default: bool = False
    ) -> Plan:
        """Offer a new plan (active, version 1): its price, and for each metric it names,
        what it includes, its overage price and its policy; a metric it does not name
        gives none (`plans.rules.not_included`). With `default`, new orgs start on it from
        now on. PlanExists when the slug is taken; InvalidInput names what is wrong."""
        async with self._tx.begin(uow) as unit:
            await self.check(plan, unit)
            repo = PlanRepository(unit)
            if await repo.get_plan(plan.slug) is not None:
                raise PlanExists(f"a plan with slug {plan.slug!r} exists", plan_slug=plan.slug)
            now = self._clock()
            if default:
                await repo.hold_catalogue()
            await repo.create_plan(replace(plan, is_active=True, is_default=False), now)
            if default:
                await repo.set_default(plan.slug, now)
            return await self.get(plan.slug, unit)

    async def set_default(self, slug: str, uow: UnitOfWork | None = None) -> Plan:
        """Make the plan the one new orgs start on (the orgs already on a plan keep it; the
        plan that was the default may then be withdrawn). PlanNotFound, or PlanInactive
        for a plan no longer offered. Idempotent."""
        async with self._tx.begin(uow) as unit:
            await PlanRepository(unit).hold_catalogue()  # one default change at a time
            plan = await self.get_active(slug, unit)
            await PlanRepository(unit).set_default(plan.slug, self._clock())
            return await self.get(plan.slug, unit)

    async def update(
        self, plan: Plan, uow: UnitOfWork | None = None, *, keep_public: bool = False
    ) -> Plan:
        """Change the plan `plan.slug` to read as `plan` (whole, as `create` takes it).

        A change of price, of the metrics it names, or of what one includes or charges
        beyond (`rules.prices_differ`) makes a new version: new subscribers get it, and
        every org already on the plan keeps the version it has until it changes plan. Name,
        description and whether it is public change in place; policies change for every
        version at once, as `set_policy` does. The currency never changes (InvalidInput:
        offer a new plan), nor does whether the plan is active (see `deactivate`) or the
        default. With `keep_public`, whether it is public stays as it is (a body that left it
        out). PlanNotFound for an unknown slug. Idempotent: the same plan again changes
        nothing."""
        async with self._tx.begin(uow) as unit:
            current = await self.get(plan.slug, unit)
            plan = replace(
                plan,
                is_active=current.is_active,
                version=current.version,
                is_default=current.is_default,
                is_public=current.is_public if keep_public else plan.is_public,
            )
            await self.check(plan, unit)
            if plan.currency != current.currency:
                raise InvalidInput(
                    f"plan {plan.slug!r} is billed in {current.currency}: a plan's currency "
                    "does not change (offer a new plan instead)",
                    field="currency",
                )
            repo = PlanRepository(unit)
            new_version = prices_differ(current, plan)
            if new_version:
                plan = replace(plan, version=current.version + 1)
            described = (plan.name, plan.description, plan.is_public)
            if new_version or described != (current.name, current.description, current.is_public):
                await repo.update_plan(plan, self._clock(), new_version=new_version)
            for key, terms in plan.metrics.items():
                if key not in current.metrics or current.metrics[key].policy != terms.policy:
                    await repo.set_policy(plan.slug, key, terms.policy)
            return await self.get(plan.slug, unit)

    async def check(self, plan: Plan, unit: UnitOfWork) -> None:
        """InvalidInput naming the first thing wrong with `plan` as an operator defines it."""
        validate_id(plan.slug, "slug", 64)
        validate_text(plan.name, "name", 128)
        validate_text(plan.description, "description", 2000)
        if not plan.name:
            raise InvalidInput("name must not be empty", field="name")
        catalogue = await self._metrics.by_key(unit)
        validate_plan(plan, {key: metric.aggregation for key, metric in catalogue.items()})

    async def deactivate(self, slug: str, uow: UnitOfWork | None = None) -> Plan:
        """Stop offering the plan: no org may move to it; the orgs on it stay, with its
        terms. The plan new orgs start on cannot be withdrawn (PlanIsDefault: make another
        plan the default first). Idempotent."""
        async with self._tx.begin(uow) as unit:
            await PlanRepository(unit).hold_catalogue()  # not while it becomes the default
            plan = await self.get(slug, unit)
            if plan.is_default:
                raise PlanIsDefault(
                    f"new orgs start on {plan.slug!r}: make another plan the default first "
                    "(`billing-kernel plans set-default`)",
                    plan_slug=plan.slug,
                )
            await PlanRepository(unit).deactivate(plan.slug, self._clock())
            return await self.get(plan.slug, unit)

    async def default(self, uow: UnitOfWork | None = None) -> Plan:
        """The plan new orgs start on; NoDefaultPlan while no plan is marked as such (a new
        deployment, until its operator creates one with `default`)."""
        async with self._tx.read(uow) as unit:
            slug = await PlanRepository(unit).default_slug()
            if slug is None:
                raise NoDefaultPlan(
                    "no plan is the default for new orgs yet: create one with "
                    "`billing-kernel plans create --default PLAN.json` (or POST "
                    '/api/v1/billing/plans with "default": true), or name the plan of the org',
                )
            return await self.get(slug, unit)
