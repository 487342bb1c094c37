"""What quota decisions read, and the per-org limit overrides."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Date, Insert, Select, bindparam, delete, func, select, tuple_

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import upsert, upsert_for
from billing_kernel.db.tables import (
    org_billing_state,
    org_limit_overrides,
    org_members,
    orgs,
    plan_metrics,
    plans,
    quota_decisions,
    usage_counters,
    usage_reservations,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Enforcement, PlanMetric, Policy, not_included
from billing_kernel.quota.rules import LimitOverride, QuotaDecision, Reason, limit_exceeded
from billing_kernel.reservations.rules import ReservationStatus


@dataclass(frozen=True, slots=True)
class QuotaInputs:
    """What a quota decision reads, as stored; the rules that combine it are in `quota.rules`."""

    plan_terms: PlanMetric
    """What the org's plan says of the metric (`not_included` if it does not name it)."""
    override: LimitOverride | None
    """The org's own terms for the metric, if it has any."""
    counted: int
    """The metric's counter this period (for seats: the peak)."""
    held: int
    """Units held on the counter by reservations, those whose TTL has ended included."""
    expired_held: int
    """Of `held`, the units of holds whose TTL has ended (not yet given back)."""
    crossed_at: datetime | None
    """When the counter last went beyond the limit (None: it has not this period)."""
    members: int
    org_name: str | None
    plan_slug: str
    plan_version: int
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
    r = usage_reservations.c
    expired_held = (
        select(func.coalesce(func.sum(r.estimate), 0))
        .where(
            r.org_id == state.c.org_id,
            r.metric == metric,
            r.status == ReservationStatus.HELD.value,
            r.expires_at <= bindparam("now", type_=r.expires_at.type),
            r.period_start == bindparam("period_start", type_=Date),
        )
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
            func.coalesce(usage_counters.c.reserved, 0).label("held"),
            expired_held.label("expired_held"),
            usage_counters.c.crossed_at,
            members.label("members"),
            orgs.c.name.label("org_name"),
            state.c.plan_slug,
            state.c.plan_version,
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
            (plan_metrics.c.plan_slug == state.c.plan_slug)
            & (plan_metrics.c.version == state.c.plan_version)
            & (plan_metrics.c.metric == metric),
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


@functools.cache
def _save_decision(dialect_name: str) -> Insert:
    """Built once per dialect: it runs with every consume and reservation."""
    c = quota_decisions.c
    stmt: Insert = (
        upsert_for(dialect_name, quota_decisions)
        .on_conflict_do_nothing(index_elements=[c.org_id, c.idempotency_key])
        .returning(c.org_id)
    )
    return stmt


class Operation(StrEnum):
    """What a kept decision was made for."""

    CONSUME = "consume"
    RESERVE = "reserve"


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A consume's or a reservation's decision as it was answered, and the plan it offered
    as the way up."""

    operation: Operation
    decision: QuotaDecision
    upgrade_plan: str | None


class QuotaRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def prune_decisions(self, before: datetime, limit: int) -> int:
        """Delete the oldest decisions (up to `limit`) made before `before`, except those of
        reservations still held; how many."""
        q, r = quota_decisions.c, usage_reservations.c
        held = (
            select(r.org_id)
            .where(
                r.org_id == q.org_id,
                r.idempotency_key == q.idempotency_key,
                r.status == ReservationStatus.HELD.value,
            )
            .exists()
        )
        doomed = (
            await self._conn.execute(
                select(q.org_id, q.idempotency_key)
                .where(q.decided_at < before, ~held)
                .order_by(q.decided_at)
                .limit(limit)
            )
        ).all()
        if doomed:
            keys = [tuple(row) for row in doomed]
            await self._conn.execute(
                delete(quota_decisions).where(tuple_(q.org_id, q.idempotency_key).in_(keys))
            )
        return len(doomed)

    async def quota_inputs(
        self, org_id: str, period_start: date, metric: str, now: datetime
    ) -> QuotaInputs | None:
        """What a quota decision at `now` needs, in one statement; None when the org has
        no billing state yet."""
        found = (
            await self._conn.execute(
                _QUOTA_INPUTS,
                {"org_id": org_id, "period_start": period_start, "metric": metric, "now": now},
            )
        ).first()
        if found is None:
            return None
        return QuotaInputs(
            plan_terms=(
                not_included(metric)
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
            held=found.held,
            expired_held=found.expired_held,
            crossed_at=found.crossed_at,
            members=found.members,
            org_name=found.org_name,
            plan_slug=found.plan_slug,
            plan_version=found.plan_version,
            plan_name=found.plan_name,
            status=BillingStatus(found.status),
            status_since=found.status_since,
            trial_ends_at=found.trial_ends_at,
        )

    async def get_decision(self, org_id: str, idempotency_key: str) -> StoredDecision | None:
        """The org's decision kept under `idempotency_key`, if there is one."""
        c = quota_decisions.c
        found = (
            await self._conn.execute(
                select(quota_decisions).where(
                    c.org_id == org_id, c.idempotency_key == idempotency_key
                )
            )
        ).first()
        if found is None:
            return None
        limit, used, requested, held = (
            found.included_quantity,
            found.used,
            found.requested,
            found.held,
        )
        decision = QuotaDecision(
            metric=found.metric,
            requested=requested,
            used=used,
            limit=limit,
            remaining=found.remaining,
            soft_limit_exceeded=limit_exceeded(used, limit),
            would_exceed=limit_exceeded(used + held + requested, limit),
            allowed=found.allowed,
            enforcement=Enforcement(found.enforcement),
            reason=Reason(found.reason),
            resets_at=BillingPeriod.containing(found.decided_at).end,
            policy=Policy(
                Enforcement(found.enforcement),
                found.grace_percent,
                _duration(found.grace_period_seconds),
            ),
            grace_ends_at=found.grace_ends_at,
            status_blocks_at=found.status_blocks_at,
            message=found.message,
            held=held,
        )
        return StoredDecision(Operation(found.operation), decision, found.upgrade_plan)

    async def save_decision(
        self,
        org_id: str,
        idempotency_key: str,
        operation: Operation,
        decision: QuotaDecision,
        decided_at: datetime,
    ) -> bool:
        """Keep a consume's or a reservation's decision under its key; False (and nothing
        written) when the key is already taken (by a concurrent retry of the same call)."""
        d, period = decision, decision.policy.grace_period
        result = await self._conn.execute(
            _save_decision(self._conn.dialect.name),
            {
                "org_id": org_id,
                "idempotency_key": idempotency_key,
                "operation": operation.value,
                "held": d.held,
                "metric": d.metric,
                "requested": d.requested,
                "decided_at": decided_at,
                "allowed": d.allowed,
                "reason": d.reason.value,
                "used": d.used,
                "included_quantity": d.limit,
                "remaining": d.remaining,
                "enforcement": d.policy.mode.value,
                "grace_percent": d.policy.grace_percent,
                "grace_period_seconds": None if period is None else int(period.total_seconds()),
                "grace_ends_at": d.grace_ends_at,
                "status_blocks_at": d.status_blocks_at,
                "upgrade_plan": None if d.upgrade is None else d.upgrade.slug,
                "message": d.message,
            },
        )
        return result.first() is not None

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
