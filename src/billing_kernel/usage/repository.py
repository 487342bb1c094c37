"""Usage events and the per-period counters they add to, by set-based atomic SQL."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Insert,
    bindparam,
    case,
    delete,
    func,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite

from billing_kernel.alerts.rules import AlertTerms, Reading
from billing_kernel.db.database import upsert, upsert_for
from billing_kernel.db.limits import included_quantity_of, thresholds_of
from billing_kernel.db.tables import usage_counters, usage_events
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.usage.rules import Counter, CounterKey, UsageEvent

EventKey = tuple[str, str]
"""(org_id, idempotency_key)"""

# On PostgreSQL a batch travels as one array per column and is unnested by the server: a few
# parameters instead of seven per event, and one statement text for every batch size.
_PG_INSERT_EVENTS = text("""
    INSERT INTO usage_events (org_id, idempotency_key, metric, quantity, occurred_at,
                              received_at, period_start, time_given)
    SELECT * FROM unnest(CAST(:org_id AS varchar[]), CAST(:idempotency_key AS varchar[]),
                         CAST(:metric AS varchar[]), CAST(:quantity AS bigint[]),
                         CAST(:occurred_at AS timestamptz[]), CAST(:received_at AS timestamptz[]),
                         CAST(:period_start AS date[]), CAST(:time_given AS boolean[]))
    ON CONFLICT (org_id, idempotency_key) DO NOTHING
    RETURNING org_id, idempotency_key
""")
_PG_GET_EVENTS = text("""
    SELECT e.org_id, e.idempotency_key, e.metric, e.quantity, e.occurred_at, e.received_at,
           e.time_given
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
    usage_events.c.time_given,
)


def _crossing(before: ColumnElement[Any], after: ColumnElement[Any], limit: Any) -> Any:
    """`crossed_at` after usage went from `before` to `after` against `limit`: the time of
    this write when it takes usage from within the limit to beyond it (or beyond it with no
    crossing on record: a limit lowered below usage), else unchanged."""
    counters = usage_counters.c
    return case(
        (
            (after > limit) & (counters.crossed_at.is_(None) | (before <= limit)),
            bindparam("now", type_=counters.updated_at.type),
        ),
        else_=counters.crossed_at,
    )


def _stored(column: Column[Any]) -> ColumnElement[Any]:
    """The stored row's `column`, named as text: SQLAlchemy does not correlate a subquery
    inside ON CONFLICT DO UPDATE with the table written, and would read the table anew."""
    return literal_column(f"{column.table.name}.{column.name}", type_=column.type)


def _stored_limit() -> Any:
    """The org's limit for the stored counter row's metric."""
    return included_quantity_of(_stored(usage_counters.c.org_id), _stored(usage_counters.c.metric))


def _new_counter(dialect_name: str) -> postgresql.Insert | sqlite.Insert:
    """The INSERT of a counter, its crossing noted when its first value is already beyond
    the limit; the row's org, metric and value are passed again under names of their own
    (`for_org`, `for_metric`, `added`) for the lookup, with `now`."""
    counters = usage_counters.c
    limit = included_quantity_of(
        bindparam("for_org", type_=counters.org_id.type),
        bindparam("for_metric", type_=counters.metric.type),
    )
    return upsert_for(dialect_name, usage_counters).values(
        crossed_at=case(
            (
                bindparam("added", type_=counters.quantity.type) > limit,
                bindparam("now", type_=counters.updated_at.type),
            )
        )
    )


def _counter_row(key: CounterKey, quantity: int, now: datetime) -> dict[str, object]:
    """The parameters of `_new_counter` (and the upserts built on it) for one counter."""
    org_id, period_start, metric = key
    return {
        "org_id": org_id,
        "period_start": period_start,
        "metric": metric,
        "quantity": quantity,
        "updated_at": now,
        "for_org": org_id,
        "for_metric": metric,
        "added": quantity,
        "now": now,
    }


def _alerting(dialect_name: str) -> tuple[Any, Any]:
    """What a counter write also answers, for alerts: the stored row's limit and alert
    thresholds, read in the statement that writes it. Compiled to text first: SQLAlchemy
    writes a RETURNING clause's columns without their tables, subqueries' too, which
    SQLite then cannot tell apart."""
    org_id, metric = _stored(usage_counters.c.org_id), _stored(usage_counters.c.metric)
    dialect = (asyncpg if dialect_name == "postgresql" else aiosqlite).dialect()

    def as_text(expression: Any, name: str) -> Any:
        compiled = expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        return literal_column(f"({compiled})", type_=expression.type).label(name)

    return (
        as_text(included_quantity_of(org_id, metric), "alert_limit"),
        as_text(thresholds_of(org_id, metric), "alert_thresholds"),
    )


def _reading(row: Any) -> Reading:
    return Reading(row.quantity, AlertTerms(row.alert_limit, row.alert_thresholds))


def _counter(row: Any) -> Counter:
    """A counter a write returned: usage and holds, and the alert terms when it read them."""
    terms = None
    if getattr(row, "alert_thresholds", None) is not None:
        terms = AlertTerms(row.alert_limit, row.alert_thresholds)
    return Counter(row.quantity, row.reserved, terms)


def _most() -> Any:
    return bindparam("most", type_=usage_counters.c.quantity.type)


def _bound(most: int | None) -> dict[str, object]:
    """The `most` parameter of a statement built `within_ceiling` (None: built without)."""
    return {} if most is None else {"most": most}


def _adding(dialect_name: str, *, within_ceiling: bool = False, releasing: bool = False) -> Any:
    """The upsert that adds a proposed value to its counter (`quantity = quantity +
    excluded.quantity`, or a new row), noting in the same statement when the counter
    crosses the org's limit (see `_crossing`). `within_ceiling`: a stored counter is added
    to only if its new total and its holds together stay at most the `most` parameter.
    `releasing`: the same statement takes the `released` parameter off its holds."""
    counters = usage_counters.c
    stmt = _new_counter(dialect_name)
    added = counters.quantity + stmt.excluded.quantity
    set_ = {
        "quantity": added,
        "crossed_at": _crossing(counters.quantity, added, _stored_limit()),
        "updated_at": stmt.excluded.updated_at,
    }
    if releasing:
        set_["reserved"] = counters.reserved - bindparam("released", type_=counters.reserved.type)
    return stmt.on_conflict_do_update(
        index_elements=[counters.org_id, counters.period_start, counters.metric],
        set_=set_,
        where=added + counters.reserved <= _most() if within_ceiling else None,
    )


@functools.cache
def _add_to_counters(dialect_name: str) -> Insert:
    """Built once per dialect: it runs with every batch."""
    counters = usage_counters.c
    stmt: Insert = _adding(dialect_name).returning(
        counters.org_id,
        counters.period_start,
        counters.metric,
        counters.quantity,
        *_alerting(dialect_name),
    )
    return stmt


@functools.cache
def _add_within(dialect_name: str, *, within_ceiling: bool) -> Insert:
    """`_add_to_counters` for one counter, answering its usage and holds after. With
    `within_ceiling`, only if its new total and its holds together stay at most `most`:
    the condition is judged on the row as it is when the statement holds its lock (on
    PostgreSQL, the latest committed row, a concurrent writer's units included), so no two
    writers can both take the last units. No row comes back when it would not fit."""
    counters = usage_counters.c
    stmt: Insert = _adding(dialect_name, within_ceiling=within_ceiling).returning(
        counters.quantity, counters.reserved, *_alerting(dialect_name)
    )
    return stmt


@functools.cache
def _add_releasing(dialect_name: str) -> Insert:
    """A reservation's commit: its usage added as `_add_to_counters` adds it, and the units
    it held (`released`) taken off the counter's holds, in one statement."""
    stmt: Insert = _adding(dialect_name, releasing=True).returning(
        usage_counters.c.quantity, *_alerting(dialect_name)
    )
    return stmt


@functools.cache
def _hold(dialect_name: str, *, within_ceiling: bool) -> Insert:
    """A reservation's hold: its units added to the counter's holds (a new counter: no
    usage yet, the holds only). `within_ceiling`: only if the counter's usage and holds
    together stay at most `most`, judged on the locked row as `_add_within` does;
    no row comes back when they would not fit."""
    counters = usage_counters.c
    stmt = _new_counter(dialect_name)
    held = counters.reserved + stmt.excluded.reserved
    return stmt.on_conflict_do_update(
        index_elements=[counters.org_id, counters.period_start, counters.metric],
        set_={"reserved": held, "updated_at": stmt.excluded.updated_at},
        where=counters.quantity + held <= _most() if within_ceiling else None,
    ).returning(counters.quantity, counters.reserved)


@functools.cache
def _raise_counter(dialect_name: str) -> Insert:
    """A peak: the counter rises to the proposed value if that is higher, noting when it
    crosses the org's limit as `_add_to_counters` does."""
    counters = usage_counters.c
    stmt = _new_counter(dialect_name)
    higher = case(
        (stmt.excluded.quantity > counters.quantity, stmt.excluded.quantity),
        else_=counters.quantity,
    )
    return stmt.on_conflict_do_update(
        index_elements=[counters.org_id, counters.period_start, counters.metric],
        set_={
            "quantity": higher,
            "crossed_at": _crossing(counters.quantity, higher, _stored_limit()),
            "updated_at": stmt.excluded.updated_at,
        },
    ).returning(counters.quantity, *_alerting(dialect_name))


@functools.cache
def _pg_record_within(*, within_ceiling: bool) -> Any:
    """PostgreSQL: one event and its counter in one statement, the event first (as every
    other writer takes them: a used key stops before the counter's row is locked). The
    counter is added to only for an event this statement inserted, and only within
    `most` when `within_ceiling`. One row back: how many events were inserted (0: the key
    was used), and the counter's usage and holds after (NULL: it did not fit, and the
    caller takes the event back)."""
    events, counters = usage_events.c, usage_counters.c
    recorded = (
        postgresql.insert(usage_events)
        .values(
            org_id=bindparam("e_org", type_=events.org_id.type),
            idempotency_key=bindparam("e_key", type_=events.idempotency_key.type),
            metric=bindparam("e_metric", type_=events.metric.type),
            quantity=bindparam("e_quantity", type_=events.quantity.type),
            occurred_at=bindparam("e_occurred", type_=events.occurred_at.type),
            received_at=bindparam("e_received", type_=events.received_at.type),
            period_start=bindparam("e_period", type_=events.period_start.type),
            time_given=bindparam("e_given", type_=events.time_given.type),
        )
        .on_conflict_do_nothing(index_elements=[events.org_id, events.idempotency_key])
        .returning(events.quantity)
        .cte("recorded")
    )
    now = bindparam("now", type_=counters.updated_at.type)
    limit = included_quantity_of(
        bindparam("for_org", type_=counters.org_id.type),
        bindparam("for_metric", type_=counters.metric.type),
    )
    proposed = select(
        bindparam("for_org", type_=counters.org_id.type),
        bindparam("e_period", type_=counters.period_start.type),
        bindparam("for_metric", type_=counters.metric.type),
        recorded.c.quantity,
        now,
        case((recorded.c.quantity > limit, now)),
    ).select_from(recorded)
    stmt = postgresql.insert(usage_counters).from_select(
        ["org_id", "period_start", "metric", "quantity", "updated_at", "crossed_at"], proposed
    )
    added = counters.quantity + stmt.excluded.quantity
    counted = (
        stmt.on_conflict_do_update(
            index_elements=[counters.org_id, counters.period_start, counters.metric],
            set_={
                "quantity": added,
                "crossed_at": _crossing(counters.quantity, added, _stored_limit()),
                "updated_at": stmt.excluded.updated_at,
            },
            where=added + counters.reserved <= _most() if within_ceiling else None,
        )
        .returning(counters.quantity, counters.reserved, *_alerting("postgresql"))
        .cte("counted")
    )
    return select(
        select(func.count()).select_from(recorded).scalar_subquery().label("inserted"),
        *(
            select(counted.c[name]).scalar_subquery().label(name)
            for name in ("quantity", "reserved", "alert_limit", "alert_thresholds")
        ),
    )


class UsageRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

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
                    "time_given": [e.occurred_at_given for e in events],
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
                    "time_given": e.occurred_at_given,
                }
                for e in events
            ],
        )
        return {(org_id, key) for org_id, key in result}

    async def delete_event(self, org_id: str, idempotency_key: str) -> None:
        """Take back an event this transaction inserted (its usage was refused)."""
        await self._conn.execute(
            delete(usage_events).where(
                usage_events.c.org_id == org_id, usage_events.c.idempotency_key == idempotency_key
            )
        )

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
                occurred_at_given=r.time_given,
            )
            for r in result
        }

    async def add_to_counters(
        self, increments: Mapping[CounterKey, int], now: datetime
    ) -> dict[CounterKey, Reading]:
        """Add to each counter in one atomic upsert (`quantity = quantity + excluded.quantity`);
        returns each counter's new total, as this transaction sees it, with its alert terms.

        Callers pass the increments in a stable order so that concurrent batches lock counter
        rows in the same order and cannot deadlock.
        """
        if not increments:
            return {}
        result = await self._conn.execute(
            _add_to_counters(self._conn.dialect.name),
            [_counter_row(key, quantity, now) for key, quantity in increments.items()],
        )
        return {(row.org_id, row.period_start, row.metric): _reading(row) for row in result}

    async def add_within(
        self, key: CounterKey, quantity: int, most: int | None, now: datetime
    ) -> Counter | None:
        """Add `quantity` to the counter if its total and its holds together stay at most
        `most` (None: no bound), in one atomic statement; returns the counter after, or
        None when it would not fit (and nothing was written)."""
        if most is not None and quantity > most:  # never below zero: it cannot fit
            return None
        return await self._counter_write(
            _add_within(self._conn.dialect.name, within_ceiling=most is not None),
            _counter_row(key, quantity, now) | _bound(most),
        )

    async def record_within(
        self, event: UsageEvent, most: int | None
    ) -> tuple[bool, Counter | None]:
        """Insert `event` and add it to its counter if the counter's total and holds stay at
        most `most` (None: no bound), the event first. Returns (inserted, counter after):
        not inserted when the org already used the key (nothing written); no counter when
        it did not fit, the event then being inserted, for the caller to take back. On
        PostgreSQL, one statement (`_pg_record_within`) does both."""
        fits_alone = most is None or event.quantity <= most  # else no new counter may hold it
        if self._conn.dialect.name == "postgresql" and fits_alone:
            row = (
                await self._conn.execute(
                    _pg_record_within(within_ceiling=most is not None),
                    {
                        "e_org": event.org_id,
                        "e_key": event.idempotency_key,
                        "e_metric": event.metric,
                        "e_quantity": event.quantity,
                        "e_occurred": event.occurred_at,
                        "e_received": event.received_at,
                        "e_period": event.period_start,
                        "e_given": event.occurred_at_given,
                        "for_org": event.org_id,
                        "for_metric": event.metric,
                        "now": event.received_at,
                    }
                    | _bound(most),
                )
            ).one()
            after = None if row.quantity is None else _counter(row)
            return bool(row.inserted), after
        if not await self.insert_events([event]):
            return False, None
        key = (event.org_id, event.period_start, event.metric)
        return True, await self.add_within(key, event.quantity, most, event.received_at)

    async def hold_within(
        self, key: CounterKey, quantity: int, most: int | None, now: datetime
    ) -> Counter | None:
        """Add `quantity` to the counter's holds if its usage and holds together stay at
        most `most` (None: no bound), in one atomic statement; returns the counter after,
        or None when they would not fit (and nothing was written)."""
        if most is not None and quantity > most:
            return None
        return await self._counter_write(
            _hold(self._conn.dialect.name, within_ceiling=most is not None),
            _counter_row(key, 0, now) | {"reserved": quantity} | _bound(most),
        )

    async def _counter_write(
        self, statement: Insert, parameters: dict[str, object]
    ) -> Counter | None:
        found = (await self._conn.execute(statement, parameters)).first()
        return None if found is None else _counter(found)

    async def add_releasing(
        self, key: CounterKey, quantity: int, released: int, now: datetime
    ) -> Reading:
        """Add `quantity` to the counter and take `released` off its holds, atomically;
        returns the counter's usage after, with its alert terms."""
        result = await self._conn.execute(
            _add_releasing(self._conn.dialect.name),
            _counter_row(key, quantity, now) | {"released": released},
        )
        return _reading(result.one())

    async def release_holds(self, releases: Mapping[CounterKey, int], now: datetime) -> None:
        """Take each amount off its counter's holds (in the stable order given)."""
        if not releases:
            return
        counters = usage_counters.c
        await self._conn.execute(
            update(usage_counters)
            .where(
                counters.org_id == bindparam("k_org"),
                counters.period_start == bindparam("k_period"),
                counters.metric == bindparam("k_metric"),
            )
            .values(reserved=counters.reserved - bindparam("released"), updated_at=now),
            [
                {"k_org": org_id, "k_period": period, "k_metric": metric, "released": released}
                for (org_id, period, metric), released in releases.items()
            ],
        )

    async def counter(self, key: CounterKey) -> Counter:
        """A counter's usage and holds (zeros when it has none), as committed now."""
        org_id, period_start, metric = key
        counters = usage_counters.c
        found = (
            await self._conn.execute(
                select(counters.quantity, counters.reserved).where(
                    counters.org_id == org_id,
                    counters.period_start == period_start,
                    counters.metric == metric,
                )
            )
        ).first()
        return Counter(0, 0) if found is None else Counter(found.quantity, found.reserved)

    async def raise_to_at_least(self, key: CounterKey, value: int, now: datetime) -> Reading:
        """Set a counter to `value` if that is higher (a peak), atomically; returns the
        counter's new value, with its alert terms."""
        result = await self._conn.execute(
            _raise_counter(self._conn.dialect.name), _counter_row(key, value, now)
        )
        return _reading(result.one())

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

    async def last_period_with(
        self, org_id: str, metric: str, before: date | None = None
    ) -> date | None:
        """The start of the latest period (before `before`, if given) with a counter of
        `metric` for the org; None if there is none."""
        query = select(func.max(usage_counters.c.period_start)).where(
            usage_counters.c.org_id == org_id, usage_counters.c.metric == metric
        )
        if before is not None:
            query = query.where(usage_counters.c.period_start < before)
        latest: date | None = await self._conn.scalar(query)
        return latest

    async def counters_for_period(self, org_id: str, period_start: date) -> dict[str, int]:
        """The org's counters for one period, by metric."""
        result = await self._conn.execute(
            select(usage_counters.c.metric, usage_counters.c.quantity).where(
                usage_counters.c.org_id == org_id, usage_counters.c.period_start == period_start
            )
        )
        return dict(result.all())
