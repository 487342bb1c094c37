"""Alert thresholds, the alert state of each counter's thresholds, and the event log."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Insert,
    Select,
    bindparam,
    delete,
    func,
    select,
    true,
    update,
)

from billing_kernel.alerts.rules import (
    DEFAULT_THRESHOLDS,
    AlertKey,
    AlertRow,
    AlertState,
    AlertTerms,
)
from billing_kernel.db.database import upsert, upsert_for
from billing_kernel.db.limits import included_quantity_of, own_thresholds_of, thresholds_of
from billing_kernel.db.tables import (
    metrics,
    org_alert_thresholds,
    org_billing_state,
    plan_alert_thresholds,
    usage_alerts,
    usage_counters,
)
from billing_kernel.db.unit_of_work import UnitOfWork

OrgMetric = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert state this statement changed, and how many crossings it has now."""

    key: AlertKey
    crossings: int


@functools.cache
def _crossing_statement(dialect_name: str) -> Insert:
    """A threshold's state set to crossed: a new row, or a resolved one crossed again (its
    crossings counted up); a row already crossed is left alone and returns nothing. Judged
    on the row as the statement locks it, so concurrent writers cross it once."""
    alerts = usage_alerts.c
    stmt = upsert_for(dialect_name, usage_alerts)
    return stmt.on_conflict_do_update(
        index_elements=[alerts.org_id, alerts.period_start, alerts.metric, alerts.threshold],
        set_={
            "status": "crossed",
            "crossings": alerts.crossings + 1,
            "used": stmt.excluded.used,
            "limit_quantity": stmt.excluded.limit_quantity,
            "crossed_at": stmt.excluded.crossed_at,
            "resolved_at": None,
            "dismissed_at": None,
        },
        where=alerts.status == "resolved",
    ).returning(
        alerts.org_id, alerts.period_start, alerts.metric, alerts.threshold, alerts.crossings
    )


@functools.cache
def _terms_statement() -> Select[Any]:
    """Built once. The orgs' and metrics' lists are expanding parameters."""
    state = org_billing_state.alias("state")
    org_id, metric = state.c.org_id, metrics.c.key
    return (
        select(
            org_id,
            metric,
            included_quantity_of(org_id, metric).label("limit"),
            thresholds_of(org_id, metric, default=DEFAULT_THRESHOLDS).label("thresholds"),
            own_thresholds_of(org_id, metric).is_not(None).label("own"),
        )
        .select_from(state.join(metrics, true()))
        .where(
            org_id.in_(bindparam("org_ids", expanding=True)),
            metric.in_(bindparam("metrics", expanding=True)),
        )
    )


class AlertRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def terms(self, keys: Iterable[OrgMetric]) -> dict[OrgMetric, AlertTerms]:
        """Each (org, metric)'s limit and thresholds (see `db.limits.thresholds_of`); orgs
        without a billing state are left out."""
        wanted = set(keys)
        if not wanted:
            return {}
        result = await self._conn.execute(
            _terms_statement(),
            {
                "org_ids": sorted({org_id for org_id, _ in wanted}),
                "metrics": sorted({metric for _, metric in wanted}),
            },
        )
        return {
            (row.org_id, row.key): AlertTerms(row.limit, row.thresholds, bool(row.own))
            for row in result
            if (row.org_id, row.key) in wanted
        }

    async def cross(self, rows: Sequence[AlertRow], now: datetime) -> list[Transition]:
        """Set each (alert, used, limit) crossed unless it already is; returns those this
        call crossed (in a stable order, so concurrent writers lock rows alike)."""
        if not rows:
            return []
        result = await self._conn.execute(
            _crossing_statement(self._conn.dialect.name),
            [
                {
                    "org_id": org_id,
                    "period_start": period,
                    "metric": metric,
                    "threshold": key,
                    "status": "crossed",
                    "crossings": 1,
                    "used": used,
                    "limit_quantity": limit,
                    "crossed_at": now,
                }
                for (org_id, period, metric, key), used, limit in sorted(rows, key=_by_key)
            ],
        )
        return [
            Transition(AlertKey(r.org_id, r.period_start, r.metric, r.threshold), r.crossings)
            for r in result
        ]

    async def resolve(self, rows: Sequence[AlertRow], now: datetime) -> list[Transition]:
        """Set each crossed (alert, used, limit) resolved; returns those this call resolved."""
        alerts = usage_alerts.c
        resolved = []
        for (org_id, period, metric, key), used, limit in sorted(rows, key=_by_key):
            found = (
                await self._conn.execute(
                    update(usage_alerts)
                    .where(
                        alerts.org_id == org_id,
                        alerts.period_start == period,
                        alerts.metric == metric,
                        alerts.threshold == key,
                        alerts.status == "crossed",
                    )
                    .values(status="resolved", used=used, limit_quantity=limit, resolved_at=now)
                    .returning(alerts.crossings)
                )
            ).first()
            if found is not None:
                resolved.append(Transition(AlertKey(org_id, period, metric, key), found.crossings))
        return resolved

    async def states(
        self, org_id: str, period: date, *, crossed_only: bool = False
    ) -> list[AlertState]:
        """The org's alert states in one period, by metric then threshold."""
        alerts = usage_alerts.c
        query = select(usage_alerts).where(alerts.org_id == org_id, alerts.period_start == period)
        if crossed_only:
            query = query.where(alerts.status == "crossed")
        result = await self._conn.execute(query.order_by(alerts.metric, alerts.crossed_at))
        return [
            AlertState(
                r.org_id,
                r.period_start,
                r.metric,
                r.threshold,
                r.status,
                r.crossings,
                r.used,
                r.limit_quantity,
                r.crossed_at,
                r.resolved_at,
                r.dismissed_at,
            )
            for r in result
        ]

    async def dismiss(self, key: AlertKey, now: datetime) -> bool:
        """Mark a crossed alert dismissed; whether there was one."""
        org_id, period, metric, threshold = key
        alerts = usage_alerts.c
        result = await self._conn.execute(
            update(usage_alerts)
            .where(
                alerts.org_id == org_id,
                alerts.period_start == period,
                alerts.metric == metric,
                alerts.threshold == threshold,
                alerts.status == "crossed",
            )
            .values(dismissed_at=func.coalesce(alerts.dismissed_at, now))
            .returning(alerts.threshold)
        )
        return result.first() is not None

    async def counters(self, org_id: str, period: date) -> dict[str, int]:
        """The org's usage of each metric in one period."""
        counters = usage_counters.c
        result = await self._conn.execute(
            select(counters.metric, counters.quantity).where(
                counters.org_id == org_id, counters.period_start == period
            )
        )
        return dict(result.all())

    async def org_thresholds(self, org_id: str) -> dict[str, str]:
        """The org's own thresholds, by metric."""
        own = org_alert_thresholds.c
        result = await self._conn.execute(
            select(own.metric, own.thresholds).where(own.org_id == org_id)
        )
        return dict(result.all())

    async def set_org_thresholds(
        self, org_id: str, metric: str, thresholds: str, now: datetime
    ) -> None:
        stmt = upsert(self._conn, org_alert_thresholds).values(
            org_id=org_id, metric=metric, thresholds=thresholds, updated_at=now
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[org_alert_thresholds.c.org_id, org_alert_thresholds.c.metric],
                set_={"thresholds": thresholds, "updated_at": now},
            )
        )

    async def clear_org_thresholds(self, org_id: str, metric: str) -> None:
        own = org_alert_thresholds.c
        await self._conn.execute(
            delete(org_alert_thresholds).where(own.org_id == org_id, own.metric == metric)
        )

    async def set_plan_thresholds(self, plan_slug: str, metric: str, thresholds: str) -> None:
        stmt = upsert(self._conn, plan_alert_thresholds).values(
            plan_slug=plan_slug, metric=metric, thresholds=thresholds
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[plan_alert_thresholds.c.plan_slug, plan_alert_thresholds.c.metric],
                set_={"thresholds": thresholds},
            )
        )

    async def plan_thresholds(self, plan_slug: str) -> dict[str, str]:
        plan = plan_alert_thresholds.c
        result = await self._conn.execute(
            select(plan.metric, plan.thresholds).where(plan.plan_slug == plan_slug)
        )
        return dict(result.all())

    async def orgs_on_plan_with_usage(self, plan_slug: str, period: date) -> list[str]:
        """The orgs on the plan that have usage in the period."""
        state, counters = org_billing_state.c, usage_counters.c
        result = await self._conn.execute(
            select(state.org_id)
            .where(
                state.plan_slug == plan_slug,
                state.org_id.in_(select(counters.org_id).where(counters.period_start == period)),
            )
            .order_by(state.org_id)
        )
        return list(result.scalars())


def _by_key(row: AlertRow) -> AlertKey:
    return row.key
