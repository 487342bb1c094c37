"""Forgetting a month's events and lines past BILLING_EVENT_RETENTION_MONTHS, in bounded
batches, org by org; each batch reads through an index that leads with the org, so that a
batch costs the same on a table of ten rows or ten billion. `usage_forgotten_months` records
the months begun and finished. Counters, invoices and what they recorded are kept."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    ColumnElement,
    String,
    any_,
    bindparam,
    delete,
    func,
    select,
    tuple_,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import upsert
from billing_kernel.db.tables import (
    usage_counters,
    usage_event_keys,
    usage_events,
    usage_forgotten_months,
    usage_lines,
    usage_repeats,
    usage_unique_values,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.metrics.rules import Position
from billing_kernel.usage.repository.event_sql import stored_under


class UsageRetention:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def earliest_month(self) -> date | None:
        """The first month any usage was recorded in (counted, or received and counted by no
        metric); None: none."""
        counted = await self._conn.execute(select(func.min(usage_counters.c.period_start)))
        first: date | None = counted.scalar_one()
        e = usage_events.c
        uncounted = await self._conn.execute(select(func.min(e.occurred_at)).where(~e.counted))
        at: datetime | None = uncounted.scalar_one()
        if at is not None:
            month = BillingPeriod.containing(at).key
            first = month if first is None else min(first, month)
        return first

    async def finished_months(self) -> set[date]:
        f = usage_forgotten_months.c
        result = await self._conn.execute(select(f.period_start).where(f.finished_at.is_not(None)))
        return set(result.scalars())

    async def forgotten_months(self) -> set[date]:
        """The months begun to be forgotten, finished or not: their lines may be gone."""
        result = await self._conn.execute(select(usage_forgotten_months.c.period_start))
        return set(result.scalars())

    async def unbilled(self, month: date) -> bool:
        """Whether a line of `month` is billed by no invoice yet."""
        e = usage_lines.c
        found = await self._conn.execute(
            select(e.org_id).where(e.period_start == month, e.invoice_id.is_(None)).limit(1)
        )
        return found.first() is not None

    async def begin(self, month: date, now: datetime) -> None:
        """Record that `month` is being forgotten (once; a second worker's record is kept)."""
        insert = upsert(self._conn, usage_forgotten_months)
        await self._conn.execute(
            insert.values(period_start=month, began_at=now).on_conflict_do_nothing()
        )

    async def finish(self, month: date, now: datetime) -> None:
        f = usage_forgotten_months.c
        await self._conn.execute(
            update(usage_forgotten_months)
            .where(f.period_start == month, f.finished_at.is_(None))
            .values(finished_at=now)
        )

    async def orgs_of(self, month: date) -> list[str]:
        """The orgs with usage in `month`, counted or not, in id order."""
        period = BillingPeriod.starting(month)
        c, e = usage_counters.c, usage_events.c
        found = await self._conn.execute(
            union(
                select(c.org_id).where(c.period_start == month),
                select(e.org_id).where(
                    ~e.counted, e.occurred_at >= period.start, e.occurred_at < period.end
                ),
            )
        )
        return sorted(found.scalars())

    async def forget_counted_events(
        self, org_id: str, month: date, after: Position | None, limit: int, *, events: bool
    ) -> tuple[int, Position | None]:
        """Delete the org's events' keys and repeats, and unless not `events` the events
        (their month's partition is to be dropped), behind the next `limit` lines of `month`
        after `after`, in event time and key order; the lines stay. How many lines were
        read, and where the last stands."""
        period = BillingPeriod.starting(month)
        e = usage_lines.c
        query = select(e.occurred_at, e.idempotency_key).where(
            e.org_id == org_id,
            e.period_start == month,
            e.occurred_at >= period.start,
            e.occurred_at < period.end,
        )
        if after is not None:
            query = query.where(tuple_(e.occurred_at, e.idempotency_key) > tuple(after))
        rows = (
            await self._conn.execute(query.order_by(e.occurred_at, e.idempotency_key).limit(limit))
        ).all()
        if not rows:
            return 0, after
        keys = sorted({row.idempotency_key for row in rows})
        await self._forget_keys(org_id, period, keys, events=events)
        last = rows[-1]
        return len(rows), Position(last.occurred_at, last.idempotency_key)

    async def forget_uncounted_events(
        self, org_id: str, month: date, limit: int, *, events: bool
    ) -> int:
        """Delete the keys and repeats of up to `limit` of the org's events of `month` that
        no metric counted (they have no lines), and unless not `events` the events (their
        month's partition is to be dropped); how many."""
        period = BillingPeriod.starting(month)
        e = usage_events.c
        keys = list(
            (  # through the keys still stored: an event whose partition waits is done
                await self._conn.execute(
                    select(e.idempotency_key)
                    .select_from(
                        usage_events.join(usage_event_keys, stored_under(usage_event_keys.c))
                    )
                    .where(
                        e.org_id == org_id,
                        ~e.counted,
                        e.occurred_at >= period.start,
                        e.occurred_at < period.end,
                    )
                    .limit(limit)
                )
            ).scalars()
        )
        await self._forget_keys(org_id, period, keys, events=events)
        return len(keys)

    async def forget_unique_values(self, org_id: str, month: date, limit: int) -> int:
        """Delete up to `limit` of the values the org's unique counts saw in `month`."""
        u = usage_unique_values.c
        rows = (
            await self._conn.execute(
                select(u.metric, u.value)
                .where(u.org_id == org_id, u.period_start == month)
                .limit(limit)
            )
        ).all()
        by_metric: dict[str, list[str]] = {}
        for metric, value in rows:
            by_metric.setdefault(metric, []).append(value)
        for metric, values in by_metric.items():
            await self._conn.execute(
                delete(usage_unique_values).where(
                    u.org_id == org_id,
                    u.period_start == month,
                    u.metric == metric,
                    u.value.in_(values),
                )
            )
        return len(rows)

    async def forget_lines(self, org_id: str, month: date, limit: int) -> int:
        """Delete the lines of up to `limit` of the org's events of `month` (where the month
        is not a partition of its own to drop whole); how many events' lines."""
        e = usage_lines.c
        keys = list(
            (
                await self._conn.execute(
                    select(e.idempotency_key)
                    .where(e.org_id == org_id, e.period_start == month)
                    .distinct()
                    .limit(limit)
                )
            ).scalars()
        )
        if keys:
            await self._conn.execute(
                delete(usage_lines).where(
                    e.org_id == org_id,
                    e.period_start == month,
                    self._among(e.idempotency_key, keys),
                )
            )
        return len(keys)

    async def _forget_keys(
        self, org_id: str, period: BillingPeriod, keys: list[str], *, events: bool
    ) -> None:
        """Delete the org's keys `keys` of events in `period`, their repeats, and unless
        not `events` their events (read in the period's partition alone)."""
        if not keys:
            return
        for table in (usage_event_keys, usage_repeats):
            await self._conn.execute(
                delete(table).where(
                    table.c.org_id == org_id, self._among(table.c.idempotency_key, keys)
                )
            )
        if events:
            e = usage_events.c
            await self._conn.execute(
                delete(usage_events).where(
                    e.org_id == org_id,
                    self._among(e.idempotency_key, keys),
                    e.occurred_at >= period.start,
                    e.occurred_at < period.end,
                )
            )

    def _among(self, key: ColumnElement[str], keys: list[str]) -> ColumnElement[bool]:
        """`key` is one of `keys`: on PostgreSQL one array parameter (one statement text,
        prepared once, for every batch), elsewhere a list of parameters."""
        if self._conn.dialect.name == "postgresql":
            return key == any_(bindparam("keys", keys, type_=ARRAY(String)))
        return key.in_(keys)
