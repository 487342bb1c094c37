"""Usage events and the per-period counters they add to, by set-based atomic SQL."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, Insert, Select, bindparam, case, func, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from billing_kernel.domain.usage import CounterKey, UsageEvent
from billing_kernel.store.database import upsert, upsert_for
from billing_kernel.store.tables import (
    org_billing_state,
    org_limit_overrides,
    org_members,
    plan_metrics,
    usage_counters,
    usage_events,
)

EventKey = tuple[str, str]
"""(org_id, idempotency_key)"""

# On PostgreSQL a batch travels as one array per column and is unnested by the server: a few
# parameters instead of seven per event, and one statement text for every batch size.
_PG_INSERT_EVENTS = text("""
    INSERT INTO usage_events (org_id, idempotency_key, metric, quantity, occurred_at,
                              received_at, period_start)
    SELECT * FROM unnest(CAST(:org_id AS varchar[]), CAST(:idempotency_key AS varchar[]),
                         CAST(:metric AS varchar[]), CAST(:quantity AS bigint[]),
                         CAST(:occurred_at AS timestamptz[]), CAST(:received_at AS timestamptz[]),
                         CAST(:period_start AS date[]))
    ON CONFLICT (org_id, idempotency_key) DO NOTHING
    RETURNING org_id, idempotency_key
""")
_PG_GET_EVENTS = text("""
    SELECT e.org_id, e.idempotency_key, e.metric, e.quantity, e.occurred_at, e.received_at
    FROM usage_events e
    JOIN unnest(CAST(:org_id AS varchar[]), CAST(:idempotency_key AS varchar[]))
         AS k(org_id, idempotency_key)
      ON e.org_id = k.org_id AND e.idempotency_key = k.idempotency_key
""").columns(
    usage_events.c.org_id,
    usage_events.c.idempotency_key,
    usage_events.c.metric,
    usage_events.c.quantity,
    usage_events.c.occurred_at,
    usage_events.c.received_at,
)


@dataclass(frozen=True, slots=True)
class QuotaInputs:
    """What a quota decision reads, as stored; the rules that combine it are the domain's."""

    plan_included: int | None
    """What the org's plan includes of the metric (None: unlimited, or not in the plan)."""
    overrides: Mapping[str, int | None]
    """The org's own limit for the metric, if it has one (None: unlimited)."""
    counted: int
    """The metric's counter this period (for seats: the peak)."""
    members: int


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
        )
        .select_from(state)
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


@functools.cache
def _add_to_counters(dialect_name: str) -> Insert:
    """Built once per dialect: it runs with every batch."""
    stmt = upsert_for(dialect_name, usage_counters)
    return stmt.on_conflict_do_update(
        index_elements=[
            usage_counters.c.org_id,
            usage_counters.c.period_start,
            usage_counters.c.metric,
        ],
        set_={
            "quantity": usage_counters.c.quantity + stmt.excluded.quantity,
            "updated_at": stmt.excluded.updated_at,
        },
    )


class UsageRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def insert_events(self, events: Sequence[UsageEvent]) -> set[EventKey]:
        """Insert the events whose keys are new; returns the keys that were inserted.

        One statement for the whole batch. A key already stored (or repeated in the batch) is
        skipped by the unique primary key, so concurrent senders of one key insert it once.
        """
        if not events:
            return set()
        if self._conn.dialect.name == "postgresql":
            result = await self._conn.execute(
                _PG_INSERT_EVENTS,
                {
                    "org_id": [e.org_id for e in events],
                    "idempotency_key": [e.idempotency_key for e in events],
                    "metric": [e.metric for e in events],
                    "quantity": [e.quantity for e in events],
                    "occurred_at": [e.occurred_at for e in events],
                    "received_at": [e.received_at for e in events],
                    "period_start": [e.period_start for e in events],
                },
            )
            return {(org_id, key) for org_id, key in result}
        stmt = (
            upsert(self._conn, usage_events)
            .on_conflict_do_nothing(
                index_elements=[usage_events.c.org_id, usage_events.c.idempotency_key]
            )
            .returning(usage_events.c.org_id, usage_events.c.idempotency_key)
        )
        result = await self._conn.execute(
            stmt,
            [
                {
                    "org_id": e.org_id,
                    "idempotency_key": e.idempotency_key,
                    "metric": e.metric,
                    "quantity": e.quantity,
                    "occurred_at": e.occurred_at,
                    "received_at": e.received_at,
                    "period_start": e.period_start,
                }
                for e in events
            ],
        )
        return {(org_id, key) for org_id, key in result}

    async def get_events(self, keys: Sequence[EventKey]) -> dict[EventKey, UsageEvent]:
        """The stored events for `keys` (those that exist)."""
        if not keys:
            return {}
        if self._conn.dialect.name == "postgresql":
            result = await self._conn.execute(
                _PG_GET_EVENTS,
                {"org_id": [k[0] for k in keys], "idempotency_key": [k[1] for k in keys]},
            )
        else:
            result = await self._conn.execute(
                select(usage_events).where(
                    tuple_(usage_events.c.org_id, usage_events.c.idempotency_key).in_(list(keys))
                )
            )
        return {
            (r.org_id, r.idempotency_key): UsageEvent(
                org_id=r.org_id,
                metric=r.metric,
                quantity=r.quantity,
                idempotency_key=r.idempotency_key,
                occurred_at=r.occurred_at,
                received_at=r.received_at,
            )
            for r in result
        }

    async def add_to_counters(self, increments: Mapping[CounterKey, int], now: datetime) -> None:
        """Add to each counter in one atomic upsert (`quantity = quantity + excluded.quantity`).

        Callers pass the increments in a stable order so that concurrent batches lock counter
        rows in the same order and cannot deadlock.
        """
        if not increments:
            return
        await self._conn.execute(
            _add_to_counters(self._conn.dialect.name),
            [
                {
                    "org_id": org_id,
                    "period_start": period_start,
                    "metric": metric,
                    "quantity": quantity,
                    "updated_at": now,
                }
                for (org_id, period_start, metric), quantity in increments.items()
            ],
        )

    async def raise_to_at_least(self, key: CounterKey, value: int, now: datetime) -> None:
        """Set a counter to `value` if that is higher (a peak), atomically."""
        org_id, period_start, metric = key
        stmt = upsert(self._conn, usage_counters).values(
            org_id=org_id,
            period_start=period_start,
            metric=metric,
            quantity=value,
            updated_at=now,
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    usage_counters.c.org_id,
                    usage_counters.c.period_start,
                    usage_counters.c.metric,
                ],
                set_={
                    "quantity": case(
                        (
                            stmt.excluded.quantity > usage_counters.c.quantity,
                            stmt.excluded.quantity,
                        ),
                        else_=usage_counters.c.quantity,
                    ),
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )

    async def daily_totals(self, org_id: str, period_start: date) -> dict[tuple[date, str], int]:
        """The org's accepted usage in one period, summed per UTC day and metric."""
        occurred = usage_events.c.occurred_at
        day = (
            func.date(func.timezone("UTC", occurred))
            if self._conn.dialect.name == "postgresql"
            else func.date(occurred)  # SQLite stores UTC text
        )
        result = await self._conn.execute(
            select(day.label("day"), usage_events.c.metric, func.sum(usage_events.c.quantity))
            .where(usage_events.c.org_id == org_id, usage_events.c.period_start == period_start)
            .group_by(day, usage_events.c.metric)
        )
        return {
            (value if isinstance(value, date) else date.fromisoformat(value), metric): int(total)
            for value, metric, total in result
        }

    async def counters_between(
        self, org_id: str, first: date, end: date
    ) -> dict[tuple[date, str], int]:
        """The org's counters for the periods starting in `[first, end)`."""
        result = await self._conn.execute(
            select(
                usage_counters.c.period_start, usage_counters.c.metric, usage_counters.c.quantity
            ).where(
                usage_counters.c.org_id == org_id,
                usage_counters.c.period_start >= first,
                usage_counters.c.period_start < end,
            )
        )
        return {(period, metric): quantity for period, metric, quantity in result}

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
        )

    async def counters_for_period(self, org_id: str, period_start: date) -> dict[str, int]:
        """The org's counters for one period, by metric."""
        result = await self._conn.execute(
            select(usage_counters.c.metric, usage_counters.c.quantity).where(
                usage_counters.c.org_id == org_id, usage_counters.c.period_start == period_start
            )
        )
        return dict(result.all())
