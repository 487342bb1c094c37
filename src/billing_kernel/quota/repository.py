"""What quota decisions read, and the per-org limit overrides."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
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
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Enforcement, PlanMetric, Policy
from billing_kernel.quota.rules import LimitOverride


@dataclass(frozen=True, slots=True)
class QuotaInputs:
    """What a quota decision reads, as stored; the rules that combine it are in `quota.rules`."""

    plan_terms: PlanMetric
    """What the org's plan says of the metric (unlimited and soft if it does not name it)."""
    override: LimitOverride | None
    """The org's own terms for the metric, if it has any."""
    counted: int
    """The metric's counter this period (for seats: the peak)."""
    crossed_at: datetime | None
    """When the counter last went beyond the limit (None: it has not this period)."""
    members: int
    org_name: str | None
    plan_slug: str
    plan_name: str
    status: BillingStatus
    status_since: datetime
    trial_ends_at: datetime | None


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
    term, override = plan_metrics.c, org_limit_overrides.c
    return (
        select(
            term.metric.label("plan_metric"),
            term.included_quantity,
            term.enforcement,
            term.grace_percent,
            term.grace_period_seconds,
            override.metric.label("override"),
            override.included_set.label("o_included_set"),
            override.included_quantity.label("o_included_quantity"),
            override.enforcement.label("o_enforcement"),
            override.grace_percent.label("o_grace_percent"),
            override.grace_period_set.label("o_grace_period_set"),
            override.grace_period_seconds.label("o_grace_period_seconds"),
            func.coalesce(usage_counters.c.quantity, 0).label("counted"),
            usage_counters.c.crossed_at,
            members.label("members"),
            orgs.c.name.label("org_name"),
            state.c.plan_slug,
            plans.c.name.label("plan_name"),
            state.c.status,
            state.c.status_since,
            state.c.trial_ends_at,
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
            plan_terms=(
                PlanMetric(metric, None)
                if found.plan_metric is None
                else PlanMetric(
                    metric,
                    found.included_quantity,
                    policy=Policy(
                        Enforcement(found.enforcement),
                        found.grace_percent,
                        _duration(found.grace_period_seconds),
                    ),
                )
            ),
            override=None if found.override is None else _override(found, prefix="o_"),
            counted=found.counted,
            crossed_at=found.crossed_at,
            members=found.members,
            org_name=found.org_name,
            plan_slug=found.plan_slug,
            plan_name=found.plan_name,
            status=BillingStatus(found.status),
            status_since=found.status_since,
            trial_ends_at=found.trial_ends_at,
        )

    async def get_limit_overrides(self, org_id: str) -> dict[str, LimitOverride]:
        result = await self._conn.execute(
            select(org_limit_overrides).where(org_limit_overrides.c.org_id == org_id)
        )
        return {row.metric: _override(row) for row in result}

    async def set_limit_override(
        self, org_id: str, metric: str, override: LimitOverride, now: datetime
    ) -> None:
        period = override.grace_period
        stmt = upsert(self._conn, org_limit_overrides).values(
            org_id=org_id,
            metric=metric,
            included_set=override.sets_included,
            included_quantity=override.included_quantity if override.sets_included else None,
            enforcement=None if override.mode is None else override.mode.value,
            grace_percent=override.grace_percent,
            grace_period_set=override.sets_grace_period,
            grace_period_seconds=(
                int(period.total_seconds()) if period and override.sets_grace_period else None
            ),
            updated_at=now,
        )
        replaced = (
            "included_set",
            "included_quantity",
            "enforcement",
            "grace_percent",
            "grace_period_set",
            "grace_period_seconds",
            "updated_at",
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[org_limit_overrides.c.org_id, org_limit_overrides.c.metric],
                set_={column: stmt.excluded[column] for column in replaced},
            )
        )

    async def clear_limit_override(self, org_id: str, metric: str) -> None:
        await self._conn.execute(
            delete(org_limit_overrides).where(
                org_limit_overrides.c.org_id == org_id, org_limit_overrides.c.metric == metric
            )
        )


def _duration(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def _override(row: Any, prefix: str = "") -> LimitOverride:
    def get(column: str) -> Any:
        return getattr(row, prefix + column)

    mode = get("enforcement")
    return LimitOverride(
        included_quantity=get("included_quantity"),
        sets_included=bool(get("included_set")),
        mode=None if mode is None else Enforcement(mode),
        grace_percent=get("grace_percent"),
        grace_period=_duration(get("grace_period_seconds")),
        sets_grace_period=bool(get("grace_period_set")),
    )
