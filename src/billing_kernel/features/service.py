"""An org's features and entitlements: its plan's features after its own values, and with
them its limits, in one read."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from billing_kernel.db.unit_of_work import ReadOnlyUnit, Transactions, UnitOfWork
from billing_kernel.features.repository import FeatureRepository
from billing_kernel.features.rules import FeatureValue, check_key, check_value, entitlements
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.rules import Terms, effective_terms
from billing_kernel.quota.service import QuotaService
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService


@dataclass(frozen=True, slots=True)
class Entitlements:
    """Everything an org may do, as its plan and its own terms say now."""

    org_id: str
    plan_slug: str
    plan_version: int
    features: Mapping[str, FeatureValue]
    """Its plan's features, after its own values."""
    own: frozenset[str]
    """The features whose value is the org's own."""
    limits: Mapping[str, Terms]
    """Each metric's limit and policy, after its own terms."""


class FeatureService:
    def __init__(
        self,
        tx: Transactions,
        clock: Callable[[], datetime],
        *,
        metrics: MetricService,
        plans: PlanService,
        orgs: OrgService,
        subscriptions: SubscriptionService,
        quota: QuotaService,
    ) -> None:
        self._tx = tx
        self._clock = clock
        self._metrics = metrics
        self._plans = plans
        self._orgs = orgs
        self._subscriptions = subscriptions
        self._quota = quota

    async def entitlements(self, org_id: str, uow: UnitOfWork | None = None) -> Entitlements:
        """The org's features and limits. Read without a transaction of its own (each
        statement on its own, as `Transactions.read` reads) unless the org's billing state
        is to be seeded (first use: default plan, in trial) or a scheduled change applied
        first; then in one that does that."""
        if uow is None:
            try:
                async with self._tx.read() as unit:
                    return await self._entitlements(org_id, unit)
            except ReadOnlyUnit:
                pass
        async with self._tx.begin(uow) as unit:
            return await self._entitlements(org_id, unit)

    async def _entitlements(self, org_id: str, unit: UnitOfWork) -> Entitlements:
        state = await self._subscriptions.billing_state(org_id, unit)
        plan = await self._plans.get(state.plan_slug, unit, version=state.plan_version)
        own = await FeatureRepository(unit).own_values(org_id)
        overrides = await self._quota.overrides(org_id, unit)
        return Entitlements(
            org_id=org_id,
            plan_slug=plan.slug,
            plan_version=plan.version,
            features=entitlements(plan.features, own),
            own=frozenset(own),
            limits={
                metric.key: effective_terms(plan, metric.key, overrides)
                for metric in await self._metrics.catalogue(unit)
            },
        )

    async def set_own_value(
        self, org_id: str, feature: str, value: object, uow: UnitOfWork | None = None
    ) -> Entitlements:
        """Give the org its own value of `feature`, replacing its plan's (or granting one its
        plan does not); answers its entitlements after. OrgNotFound for an unknown org;
        InvalidInput names a wrong key or value."""
        check_key(feature)
        checked = check_value(value, "value")
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            await FeatureRepository(unit).set_own_value(org_id, feature, checked, self._clock())
            return await self.entitlements(org_id, unit)

    async def clear_own_value(
        self, org_id: str, feature: str, uow: UnitOfWork | None = None
    ) -> Entitlements:
        """Return the org to its plan's value of `feature` (none, where its plan grants
        none); idempotent. Answers its entitlements after."""
        check_key(feature)
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            await FeatureRepository(unit).clear_own_value(org_id, feature)
            return await self.entitlements(org_id, unit)
