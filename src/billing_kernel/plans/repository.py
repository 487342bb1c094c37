"""Plans and their per-metric terms."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import Row, delete, select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import metrics, plan_metrics, plans
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.plans.rules import Enforcement, Plan, PlanMetric, Policy


class PlanRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def list_plans(self, *, active_only: bool = True) -> list[Plan]:
        """Plans, cheapest first (sorted here: SQLite keeps money as text)."""
        query = select(plans).order_by(plans.c.slug)
        if active_only:
            query = query.where(plans.c.is_active.is_(True))
        found = await self._with_terms(list(await self._conn.execute(query)))
        return sorted(found, key=lambda plan: plan.monthly_price)

    async def get_plan(self, slug: str) -> Plan | None:
        rows = list(await self._conn.execute(select(plans).where(plans.c.slug == slug)))
        found = await self._with_terms(rows)
        return found[0] if found else None

    async def _with_terms(self, rows: list[Row[tuple[object, ...]]]) -> list[Plan]:
        if not rows:
            return []
        slugs = [r.slug for r in rows]
        terms: dict[str, dict[str, PlanMetric]] = defaultdict(dict)
        result = await self._conn.execute(
            select(plan_metrics)
            .join(metrics, metrics.c.key == plan_metrics.c.metric)
            .where(plan_metrics.c.plan_slug.in_(slugs))
            .order_by(metrics.c.position, metrics.c.key)
        )
        for t in result:
            terms[t.plan_slug][t.metric] = PlanMetric(
                metric=t.metric,
                included_quantity=t.included_quantity,
                overage_unit_price=t.overage_unit_price,
                overage_unit_size=t.overage_unit_size,
                policy=Policy(
                    Enforcement(t.enforcement),
                    t.grace_percent,
                    None
                    if t.grace_period_seconds is None
                    else timedelta(seconds=t.grace_period_seconds),
                ),
            )
        return [
            Plan(
                slug=r.slug,
                name=r.name,
                description=r.description,
                currency=r.currency,
                monthly_price=r.monthly_price,
                is_active=r.is_active,
                metrics=terms[r.slug],
            )
            for r in rows
        ]

    async def save_plan(self, plan: Plan, now: datetime) -> None:
        """Create or replace a plan and all of its per-metric terms."""
        stmt = upsert(self._conn, plans).values(
            slug=plan.slug,
            name=plan.name,
            description=plan.description,
            currency=plan.currency,
            monthly_price=plan.monthly_price,
            is_active=plan.is_active,
            created_at=now,
            updated_at=now,
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[plans.c.slug],
                set_={
                    column: stmt.excluded[column]
                    for column in (
                        "name",
                        "description",
                        "currency",
                        "monthly_price",
                        "is_active",
                        "updated_at",
                    )
                },
            )
        )
        await self._conn.execute(delete(plan_metrics).where(plan_metrics.c.plan_slug == plan.slug))
        if plan.metrics:
            await self._conn.execute(
                plan_metrics.insert(),
                [
                    {
                        "plan_slug": plan.slug,
                        "metric": term.metric,
                        "included_quantity": term.included_quantity,
                        "overage_unit_price": term.overage_unit_price,
                        "overage_unit_size": term.overage_unit_size,
                        **_policy_columns(term.policy),
                    }
                    for term in plan.metrics.values()
                ],
            )

    async def deactivate(self, slug: str, now: datetime) -> None:
        await self._conn.execute(
            update(plans).where(plans.c.slug == slug).values(is_active=False, updated_at=now)
        )

    async def set_policy(self, slug: str, metric: str, policy: Policy) -> bool:
        """Set how the plan enforces its limit of `metric`; False if the plan does not name
        the metric."""
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
