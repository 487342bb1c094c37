"""Quota decisions, and the per-org limits that replace a plan's."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import validate_quantity
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.metrics.rules import Metric, used_and_peak
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.quota.repository import QuotaInputs, QuotaRepository
from billing_kernel.quota.rules import QuotaDecision, decide, explained, limit_after_overrides


class QuotaService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        metrics: MetricService,
        orgs: OrgService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._metrics = metrics
        self._orgs = orgs

    async def check(self, org_id: str, metric: str, amount: int = 1) -> QuotaDecision:
        """May the org use `amount` more of `metric`? Soft limits: always allowed; the
        decision says whether the limit is or would be exceeded, why, and in plain words."""
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
        return _decision(org_id, checked, inputs, requested, now)

    async def overrides(self, org_id: str, uow: UnitOfWork | None = None) -> dict[str, int | None]:
        """The org's own limits, by metric (None: unlimited)."""
        async with self._tx.read(uow) as unit:
            return await QuotaRepository(unit).get_limit_overrides(org_id)

    async def set_override(
        self,
        org_id: str,
        metric: str,
        included_quantity: int | None,
        uow: UnitOfWork | None = None,
    ) -> None:
        """Give the org its own limit for `metric` (None: unlimited), replacing the plan's."""
        async with self._tx.begin(uow) as unit:
            await self._orgs.billing_state(org_id, unit)
            await self._metrics.get(metric, unit)
            if included_quantity is not None:
                validate_quantity(included_quantity)
            await QuotaRepository(unit).set_limit_override(
                org_id, metric, included_quantity, self._clock()
            )

    async def clear_override(self, org_id: str, metric: str, uow: UnitOfWork | None = None) -> None:
        """Return the org to its plan's limit for `metric`."""
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            await QuotaRepository(unit).clear_limit_override(org_id, metric)


def _decision(
    org_id: str, metric: Metric, inputs: QuotaInputs, requested: int, now: datetime
) -> QuotaDecision:
    used, _ = used_and_peak(metric, inputs.counted, inputs.members)
    limit = limit_after_overrides(inputs.plan_included, metric.key, inputs.overrides)
    decision = decide(metric.key, used=used, limit=limit, requested=requested, now=now)
    return explained(
        decision, org=inputs.org_name or org_id, unit=metric.unit, plan=inputs.plan_name
    )
