"""Plans and their per-metric terms."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Row, select, tuple_, update

from billing_kernel.db.tables import metrics, plan_features, plan_metrics, plan_versions, plans
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.features.rules import FeatureValue, value_of, value_text
from billing_kernel.plans.rules import Enforcement, Plan, PlanMetric, Policy
from billing_kernel.pricing.rules import (
    PriceModel,
    dimension_of,
    dimension_text,
    tiers_of,
    tiers_text,
)

_PLANS = select(
    plans.c.slug,
    plans.c.name,
    plans.c.description,
    plans.c.currency,
    plans.c.is_active,
    plans.c.is_default,
    plans.c.is_public,
    plan_versions.c.version,
    plan_versions.c.monthly_price,
).join(plan_versions, plan_versions.c.plan_slug == plans.c.slug)


class PlanRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def list_plans(
        self, *, active_only: bool = True, public_only: bool = False
    ) -> list[Plan]:
        """Plans at their current version, cheapest first (sorted here: SQLite keeps money as
        text)."""
        query = _PLANS.where(plan_versions.c.version == plans.c.version).order_by(plans.c.slug)
        if active_only:
            query = query.where(plans.c.is_active.is_(True))
        if public_only:
            query = query.where(plans.c.is_public.is_(True))
        found = await self._with_terms(list(await self._conn.execute(query)))
        return sorted(found, key=lambda plan: plan.monthly_price)

    async def get_plan(self, slug: str, version: int | None = None) -> Plan | None:
        """The plan at `version` (None: its current one); None if either does not exist."""
        query = _PLANS.where(
            plans.c.slug == slug,
            plan_versions.c.version == (plans.c.version if version is None else version),
        )
        found = await self._with_terms(list(await self._conn.execute(query)))
        return found[0] if found else None

    async def hold_catalogue(self) -> None:
        """Hold every plan row until the transaction ends, so that changes of which plan is
        the default, or offered, run one at a time and each reads what the last one left
        (SQLite's writers are one at a time already)."""
        await self._conn.execute(select(plans.c.slug).with_for_update())

    async def default_slug(self) -> str | None:
        """The slug of the plan new orgs start on (None: no plan is marked)."""
        result = await self._conn.execute(select(plans.c.slug).where(plans.c.is_default))
        return result.scalar_one_or_none()

    async def set_default(self, slug: str, now: datetime) -> None:
        """Mark `slug` as the plan new orgs start on, and no other."""
        await self._conn.execute(
            update(plans)
            .where(plans.c.is_default, plans.c.slug != slug)
            .values(is_default=False, updated_at=now)
        )
        await self._conn.execute(
            update(plans)
            .where(plans.c.slug == slug, plans.c.is_default.is_(False))
            .values(is_default=True, updated_at=now)
        )

    async def versions(self, slug: str) -> list[tuple[int, datetime]]:
        """Each version of the plan and when it was made, oldest first."""
        result = await self._conn.execute(
            select(plan_versions.c.version, plan_versions.c.created_at)
            .where(plan_versions.c.plan_slug == slug)
            .order_by(plan_versions.c.version)
        )
        return [(row.version, row.created_at) for row in result]

    async def _with_terms(self, rows: list[Row[tuple[object, ...]]]) -> list[Plan]:
        if not rows:
            return []
        keys = [(r.slug, r.version) for r in rows]
        terms: dict[tuple[str, int], dict[str, PlanMetric]] = defaultdict(dict)
        term = plan_metrics.c
        result = await self._conn.execute(
            select(plan_metrics)
            .join(metrics, metrics.c.key == term.metric)
            .where(tuple_(term.plan_slug, term.version).in_(keys))
            .order_by(metrics.c.position, metrics.c.key)
        )
        for t in result:
            terms[t.plan_slug, t.version][t.metric] = PlanMetric(
                metric=t.metric,
                included_quantity=t.included_quantity,
                overage_unit_price=t.overage_unit_price,
                overage_unit_size=t.overage_unit_size,
                price_model=PriceModel(t.price_model),
                tiers=tiers_of(t.price_tiers),
                dimension=dimension_of(t.price_dimension, t.dimension_prices),
                policy=Policy(
                    Enforcement(t.enforcement),
                    t.grace_percent,
                    None
                    if t.grace_period_seconds is None
                    else timedelta(seconds=t.grace_period_seconds),
                ),
            )
        granted: dict[tuple[str, int], dict[str, FeatureValue]] = defaultdict(dict)
        feature = plan_features.c
        for f in await self._conn.execute(
            select(plan_features)
            .where(tuple_(feature.plan_slug, feature.version).in_(keys))
            .order_by(feature.feature)
        ):
            granted[f.plan_slug, f.version][f.feature] = value_of(f.value)
        return [
            Plan(
                slug=r.slug,
                name=r.name,
                description=r.description,
                currency=r.currency,
                monthly_price=r.monthly_price,
                is_active=r.is_active,
                version=r.version,
                is_default=r.is_default,
                is_public=r.is_public,
                metrics=terms[r.slug, r.version],
                features=granted[r.slug, r.version],
            )
            for r in rows
        ]

    async def create_plan(self, plan: Plan, now: datetime) -> None:
        """A new plan, at version 1 with its price and per-metric terms."""
        await self._conn.execute(
            plans.insert().values(
                slug=plan.slug,
                name=plan.name,
                description=plan.description,
                currency=plan.currency,
                is_active=plan.is_active,
                is_public=plan.is_public,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
        await self._add_version(replace(plan, version=1), now)

    async def update_plan(self, plan: Plan, now: datetime, *, new_version: bool) -> None:
        """The plan's name and description; with `new_version`, its price and terms as
        version `plan.version`, the one new subscribers get from now on."""
        values: dict[str, object] = {
            "name": plan.name,
            "description": plan.description,
            "is_public": plan.is_public,
            "updated_at": now,
        }
        if new_version:
            await self._add_version(plan, now)
            values["version"] = plan.version
        await self._conn.execute(update(plans).where(plans.c.slug == plan.slug).values(values))

    async def _add_version(self, plan: Plan, now: datetime) -> None:
        await self._conn.execute(
            plan_versions.insert().values(
                plan_slug=plan.slug,
                version=plan.version,
                monthly_price=plan.monthly_price,
                created_at=now,
            )
        )
        if plan.metrics:
            await self._conn.execute(
                plan_metrics.insert(),
                [
                    {
                        "plan_slug": plan.slug,
                        "version": plan.version,
                        "metric": term.metric,
                        "included_quantity": term.included_quantity,
                        "overage_unit_price": term.overage_unit_price,
                        "overage_unit_size": term.overage_unit_size,
                        "price_model": term.price_model.value,
                        "price_tiers": tiers_text(term.tiers),
                        "price_dimension": (
                            None if term.dimension is None else term.dimension.property
                        ),
                        "dimension_prices": dimension_text(term.dimension),
                        **_policy_columns(term.policy),
                    }
                    for term in plan.metrics.values()
                ],
            )
        if plan.features:
            await self._conn.execute(
                plan_features.insert(),
                [
                    {
                        "plan_slug": plan.slug,
                        "version": plan.version,
                        "feature": key,
                        "value": value_text(value),
                    }
                    for key, value in plan.features.items()
                ],
            )

    async def deactivate(self, slug: str, now: datetime) -> None:
        await self._conn.execute(
            update(plans).where(plans.c.slug == slug).values(is_active=False, updated_at=now)
        )

    async def set_policy(self, slug: str, metric: str, policy: Policy) -> bool:
        """Set how the plan enforces its limit of `metric`, in every version that names the
        metric (a policy is the plan's, not a version's); False if none does."""
        result = await self._conn.execute(
            update(plan_metrics)
            .where(plan_metrics.c.plan_slug == slug, plan_metrics.c.metric == metric)
            .values(**_policy_columns(policy))
        )
        return bool(result.rowcount)


def _policy_columns(policy: Policy) -> dict[str, object]:
    period = policy.grace_period
    return {
        "enforcement": policy.mode.value,
        "grace_percent": policy.grace_percent,
        "grace_period_seconds": None if period is None else int(period.total_seconds()),
    }
