"""Quota decisions, and the per-org terms that replace parts of a plan's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import validate_quantity
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.metrics.rules import Metric, used_and_peak
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.rules import validate_grace
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.repository import QuotaInputs, QuotaRepository
from billing_kernel.quota.rules import (
    LimitOverride,
    QuotaDecision,
    Reason,
    Standing,
    Terms,
    decide,
    effective_terms,
    explained,
    standing,
    terms_after_override,
    upgrade_for,
)


class QuotaService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        metrics: MetricService,
        plans: PlanService,
        orgs: OrgService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._metrics = metrics
        self._plans = plans
        self._orgs = orgs
        self._status_grace = timedelta(days=settings.past_due_grace_days)
        self._ended_trial_blocks = settings.ended_trial_blocks

    async def check(self, org_id: str, metric: str, amount: int = 1) -> QuotaDecision:
        """May the org use `amount` more of `metric`? The decision climbs the ladder of
        `quota.rules` (billing status, then the metric's limit and policy), says why as a
        stable reason and in plain words, and offers an upgrade when the limit refuses it."""
        requested = validate_quantity(amount)
        now = self._clock()
        period = BillingPeriod.containing(now)
        async with self._tx.read() as unit:
            checked = await self._metrics.get(metric, unit)
            inputs = await QuotaRepository(unit).quota_inputs(org_id, period.key, metric)
        if inputs is None:  # first touch: seed the state, then ask again
            async with self._tx.begin() as unit:
                await self._orgs.billing_state(org_id, unit)
                inputs = await QuotaRepository(unit).quota_inputs(org_id, period.key, metric)
        assert inputs is not None
        decision = self._decision(checked, inputs, requested, now)
        upgrade = None
        if decision.reason is Reason.LIMIT_REACHED:
            async with self._tx.read() as unit:
                current = await self._plans.get(inputs.plan_slug, unit)
                offered = await self._plans.list_active(unit)
            upgrade = upgrade_for(offered, current, metric, decision.used + requested)
        return explained(
            decision,
            org=inputs.org_name or org_id,
            unit=checked.unit,
            plan=inputs.plan_name,
            upgrade=upgrade,
        )

    def _decision(
        self, metric: Metric, inputs: QuotaInputs, requested: int, now: datetime
    ) -> QuotaDecision:
        used, _ = used_and_peak(metric, inputs.counted, inputs.members)
        terms = terms_after_override(inputs.plan_terms, inputs.override)
        return decide(
            metric.key,
            used=used,
            limit=terms.limit,
            requested=requested,
            now=now,
            policy=terms.policy,
            crossed_at=inputs.crossed_at,
            status=self._standing(inputs, now),
        )

    def _standing(self, inputs: QuotaInputs, now: datetime) -> Standing:
        return standing(
            inputs.status,
            status_since=inputs.status_since,
            # An ended trial blocks only where the operator chose so: until payments move
            # orgs out of trial, every org's trial ends.
            trial_ends_at=inputs.trial_ends_at if self._ended_trial_blocks else None,
            now=now,
            grace=self._status_grace,
        )

    async def overrides(
        self, org_id: str, uow: UnitOfWork | None = None
    ) -> dict[str, LimitOverride]:
        """The org's own terms, by metric."""
        async with self._tx.read(uow) as unit:
            return await QuotaRepository(unit).get_limit_overrides(org_id)

    async def terms(self, org_id: str, uow: UnitOfWork | None = None) -> dict[str, Terms]:
        """The org's terms for every metric in the catalogue: its plan's, after its overrides."""
        async with self._tx.begin(uow) as unit:
            state = await self._orgs.billing_state(org_id, unit)
            plan = await self._plans.get(state.plan_slug, unit)
            overrides = await QuotaRepository(unit).get_limit_overrides(org_id)
            return {
                metric.key: effective_terms(plan, metric.key, overrides)
                for metric in await self._metrics.catalogue(unit)
            }

    async def set_override(
        self,
        org_id: str,
        metric: str,
        override: LimitOverride | int | None,
        uow: UnitOfWork | None = None,
    ) -> Terms:
        """Give the org its own terms for `metric`: the parts `override` sets replace the
        plan's (a bare number, or None, sets only the limit; None: unlimited). Replaces the
        org's earlier override of the metric; returns the org's terms for it now."""
        if not isinstance(override, LimitOverride):
            override = LimitOverride(included_quantity=override, sets_included=True)
        if override.sets_included and override.included_quantity is not None:
            validate_quantity(override.included_quantity)
        validate_grace(
            override.grace_percent or 0,
            override.grace_period if override.sets_grace_period else None,
        )
        async with self._tx.begin(uow) as unit:
            await self._orgs.billing_state(org_id, unit)
            await self._metrics.get(metric, unit)
            await QuotaRepository(unit).set_limit_override(org_id, metric, override, self._clock())
            return (await self.terms(org_id, unit))[metric]

    async def clear_override(
        self, org_id: str, metric: str, uow: UnitOfWork | None = None
    ) -> Terms:
        """Return the org to its plan's terms for `metric`; returns them."""
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            await self._metrics.get(metric, unit)
            await QuotaRepository(unit).clear_limit_override(org_id, metric)
            return (await self.terms(org_id, unit))[metric]
