"""Plans: the ones on offer, the default for new orgs, and the one an org may move to."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from billing_kernel.common.validation import validate_id, validate_text
from billing_kernel.config import FALLBACK_PLAN_SLUG, Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import (
    InvalidInput,
    MetricNotInPlan,
    PlanExists,
    PlanInactive,
    PlanIsDefault,
    PlanNotFound,
)
from billing_kernel.metrics.service import MetricService
from billing_kernel.plans.repository import PlanRepository
from billing_kernel.plans.rules import Plan, Policy, validate_grace, validate_plan

logger = logging.getLogger(__name__)


@dataclass
class DefaultPlanNotice:
    """Whether the operator was told that the configured default plan is unusable (once per
    process, not on every new org)."""

    given: bool = False


class PlanService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        notice: DefaultPlanNotice,
        metrics: MetricService,
        clock: Callable[[], datetime],
    ) -> None:
        self._tx = transactions
        self._settings = settings
        self._notice = notice
        self._metrics = metrics
        self._clock = clock

    async def list_active(self, uow: UnitOfWork | None = None) -> list[Plan]:
        """Active plans, cheapest first."""
        async with self._tx.read(uow) as unit:
            return await PlanRepository(unit).list_plans(active_only=True)

    async def get(self, slug: str, uow: UnitOfWork | None = None) -> Plan:
        """The plan, active or not; PlanNotFound if there is none."""
        async with self._tx.read(uow) as unit:
            plan = await PlanRepository(unit).get_plan(slug)
        if plan is None:
            raise PlanNotFound(f"no plan with slug {slug!r}", plan_slug=slug)
        return plan

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

    async def create(self, plan: Plan, uow: UnitOfWork | None = None) -> Plan:
        """Offer a new plan (active): its price, and for each metric it names, what it
        includes, its overage price and its policy; a metric it does not name is unlimited
        and free. PlanExists when the slug is taken; InvalidInput names what is wrong."""
        validate_id(plan.slug, "slug", 64)
        validate_text(plan.name, "name", 128)
        validate_text(plan.description, "description", 2000)
        if not plan.name:
            raise InvalidInput("name must not be empty", field="name")
        async with self._tx.begin(uow) as unit:
            catalogue = await self._metrics.by_key(unit)
            validate_plan(replace(plan, is_active=True), catalogue)
            repo = PlanRepository(unit)
            if await repo.get_plan(plan.slug) is not None:
                raise PlanExists(f"a plan with slug {plan.slug!r} exists", plan_slug=plan.slug)
            await repo.save_plan(replace(plan, is_active=True), self._clock())
            return await self.get(plan.slug, unit)

    async def deactivate(self, slug: str, uow: UnitOfWork | None = None) -> Plan:
        """Stop offering the plan: no org may move to it; the orgs on it stay, with its
        terms. The plan new orgs start on cannot be withdrawn (PlanIsDefault). Idempotent."""
        async with self._tx.begin(uow) as unit:
            plan = await self.get(slug, unit)
            if plan.slug in (self._settings.default_plan_slug, FALLBACK_PLAN_SLUG):
                raise PlanIsDefault(
                    f"new orgs start on {plan.slug!r}: set BILLING_DEFAULT_PLAN_SLUG to "
                    "another plan first"
                    if plan.slug != FALLBACK_PLAN_SLUG
                    else f"{plan.slug!r} is what new orgs fall back to",
                    plan_slug=plan.slug,
                )
            await PlanRepository(unit).deactivate(plan.slug, self._clock())
            return await self.get(plan.slug, unit)

    async def default(self, uow: UnitOfWork | None = None) -> Plan:
        """The plan new orgs start on: BILLING_DEFAULT_PLAN_SLUG, else internal-dev."""
        slug = self._settings.default_plan_slug
        async with self._tx.read(uow) as unit:
            plans = PlanRepository(unit)
            plan = await plans.get_plan(slug)
            if plan is not None and plan.is_active:
                return plan
            if not self._notice.given:
                self._notice.given = True
                logger.warning(
                    "default plan %r is %s; new orgs get %r instead",
                    slug,
                    "inactive" if plan else "unknown",
                    FALLBACK_PLAN_SLUG,
                )
            fallback = await plans.get_plan(FALLBACK_PLAN_SLUG)
        if fallback is None:
            raise PlanNotFound(
                f"neither the default plan {slug!r} nor {FALLBACK_PLAN_SLUG!r} "
                "exists; run `billing-kernel migrate`",
                plan_slug=slug,
            )
        return fallback
