"""What quota decisions read, and the per-org limit overrides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Select, bindparam, delete, func, select

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import (
    org_billing_state,
    org_limit_overrides,
    org_members,
    orgs,
    plan_metrics,
    plans,
    usage_counters,
)
from billing_kernel.db.unit_of_work import UnitOfWork


@dataclass(frozen=True, slots=True)
class QuotaInputs:
    """What a quota decision reads, as stored; the rules that combine it are in `quota.rules`."""

    plan_included: int | None
    """What the org's plan includes of the metric (None: unlimited, or not in the plan)."""
    overrides: Mapping[str, int | None]
    """The org's own limit for the metric, if it has one (None: unlimited)."""
    counted: int
    """The metric's counter this period (for seats: the peak)."""
    members: int
    org_name: str | None
    plan_name: str


def _quota_inputs_query() -> Select[Any]:
    """Built once: the quota check is the hottest read, and a prebuilt statement skips
    rebuilding its expression tree and cache key on every call."""
    state = org_billing_state
    metric = bindparam("metric", type_=usage_counters.c.metric.type)
    members = (
        select(func.count())
        .select_from(org_members)
        .where(org_members.c.org_id == state.c.org_id)
        .scalar_subquery()
    )
    return (
        select(
            plan_metrics.c.included_quantity.label("plan_included"),
            org_limit_overrides.c.metric.label("override"),
            org_limit_overrides.c.included_quantity.label("override_included"),
            func.coalesce(usage_counters.c.quantity, 0).label("counted"),
            members.label("members"),
            orgs.c.name.label("org_name"),
            plans.c.name.label("plan_name"),
        )
        .select_from(state)
        .join(orgs, orgs.c.org_id == state.c.org_id)
        .join(plans, plans.c.slug == state.c.plan_slug)
        .outerjoin(
            plan_metrics,
            (plan_metrics.c.plan_slug == state.c.plan_slug) & (plan_metrics.c.metric == metric),
        )
        .outerjoin(
            org_limit_overrides,
            (org_limit_overrides.c.org_id == state.c.org_id)
            & (org_limit_overrides.c.metric == metric),
        )
        .outerjoin(
            usage_counters,
            (usage_counters.c.org_id == state.c.org_id)
            & (usage_counters.c.period_start == bindparam("period_start", type_=Date))
            & (usage_counters.c.metric == metric),
        )
        .where(state.c.org_id == bindparam("org_id", type_=state.c.org_id.type))
    )


_QUOTA_INPUTS = _quota_inputs_query()


class QuotaRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def quota_inputs(
        self, org_id: str, period_start: date, metric: str
    ) -> QuotaInputs | None:
        """What a quota decision needs, in one statement; None when the org has no billing
        state yet."""
        found = (
            await self._conn.execute(
                _QUOTA_INPUTS, {"org_id": org_id, "period_start": period_start, "metric": metric}
            )
        ).first()
        if found is None:
            return None
        return QuotaInputs(
            plan_included=found.plan_included,
            overrides={} if found.override is None else {found.override: found.override_included},
            counted=found.counted,
            members=found.members,
            org_name=found.org_name,
            plan_name=found.plan_name,
        )

    async def get_limit_overrides(self, org_id: str) -> dict[str, int | None]:
        result = await self._conn.execute(
            select(org_limit_overrides.c.metric, org_limit_overrides.c.included_quantity).where(
                org_limit_overrides.c.org_id == org_id
            )
        )
        return dict(result.all())

    async def set_limit_override(
        self, org_id: str, metric: str, included_quantity: int | None, now: datetime
    ) -> None:
        stmt = upsert(self._conn, org_limit_overrides).values(
            org_id=org_id, metric=metric, included_quantity=included_quantity, updated_at=now
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[org_limit_overrides.c.org_id, org_limit_overrides.c.metric],
                set_={
                    "included_quantity": stmt.excluded.included_quantity,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )

    async def clear_limit_override(self, org_id: str, metric: str) -> None:
        await self._conn.execute(
            delete(org_limit_overrides).where(
                org_limit_overrides.c.org_id == org_id, org_limit_overrides.c.metric == metric
            )
        )
