"""The statements that write usage counters, each one atomic: add to a counter (or a batch
of them), add only within a ceiling, hold units for a reservation, add a reservation's usage
and give back its hold, raise a peak, take a later line's value. Each notes in the same
statement when usage crosses the org's limit, and answers the org's limit and alert
thresholds with the counter (`db/limits.py`), and a batch's writes its overage price too.
Built once per dialect; `recording.py` runs them."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Insert,
    bindparam,
    case,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.dialects.sqlite import aiosqlite

from billing_kernel.alerts.rules import DEFAULT_THRESHOLDS
from billing_kernel.common.keys import CounterKey
from billing_kernel.db.database import in_code_point_order, upsert_for
from billing_kernel.db.limits import (
    included_quantity_of,
    monthly_fee_of,
    price_terms_of,
    thresholds_of,
)
from billing_kernel.db.tables import (
    usage_counters,
    usage_event_keys,
    usage_events,
    usage_lines,
    usage_priced_months,
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


def counter_row(key: CounterKey, quantity: int, now: datetime) -> dict[str, object]:
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


def _answered(dialect_name: str, *, priced: bool = False) -> tuple[Any, ...]:
    """What a counter write also answers: for alerts, the stored row's limit and alert
    thresholds; `priced`, also its plan's price (`price_terms_of`: unit price, unit size,
    model and tiers in one lookup), and whether its month is priced in full on every write,
    for the bound on what a month may come to (`usage.bounds.Charge`, `note_priced_month`).
    Read in the statement that writes the row, and compiled to text first: SQLAlchemy
    writes a RETURNING clause's columns without their tables, subqueries' too, which SQLite
    then cannot tell apart."""
    org_id, metric = _stored(usage_counters.c.org_id), _stored(usage_counters.c.metric)
    dialect = (asyncpg if dialect_name == "postgresql" else aiosqlite).dialect()

    def as_text(expression: Any, name: str) -> Any:
        compiled = expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        return literal_column(f"({compiled})", type_=expression.type).label(name)

    answered: tuple[Any, ...] = (
        as_text(included_quantity_of(org_id, metric), "alert_limit"),
        as_text(thresholds_of(org_id, metric, default=DEFAULT_THRESHOLDS), "alert_thresholds"),
    )
    if priced:
        noted = usage_priced_months.c
        answered += (
            as_text(price_terms_of(org_id, metric), "price_terms"),
            as_text(
                exists().where(
                    noted.org_id == org_id,
                    noted.period_start == _stored(usage_counters.c.period_start),
                ),
                "in_full",
            ),
        )
    return answered


def _batch_answer(dialect_name: str) -> tuple[Any, ...]:
    """What a write of a batch's counters answers of each: its key, its value, and what
    `_answered` adds, priced."""
    counters = usage_counters.c
    return (
        counters.org_id,
        counters.period_start,
        counters.metric,
        counters.quantity,
        *_answered(dialect_name, priced=True),
    )


def _most() -> Any:
    return bindparam("most", type_=usage_counters.c.quantity.type)


def bound(most: int | None) -> dict[str, object]:
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
def add_to_counters(dialect_name: str) -> Insert:
    """Built once per dialect: it runs with every batch."""
    stmt: Insert = _adding(dialect_name).returning(*_batch_answer(dialect_name))
    return stmt


@functools.cache
def add_within(dialect_name: str, *, within_ceiling: bool) -> Insert:
    """`add_to_counters` for one counter, answering its usage and holds after. With
    `within_ceiling`, only if its new total and its holds together stay at most `most`:
    the condition is judged on the row as it is when the statement holds its lock (on
    PostgreSQL, the latest committed row, a concurrent writer's units included), so no two
    writers can both take the last units. No row comes back when it would not fit."""
    counters = usage_counters.c
    stmt: Insert = _adding(dialect_name, within_ceiling=within_ceiling).returning(
        counters.quantity, counters.reserved, *_answered(dialect_name, priced=True)
    )
    return stmt


@functools.cache
def add_releasing(dialect_name: str) -> Insert:
    """A reservation's commit: its usage added as `add_to_counters` adds it, and the units
    it held (`released`) taken off the counter's holds, in one statement."""
    stmt: Insert = _adding(dialect_name, releasing=True).returning(
        usage_counters.c.quantity, *_answered(dialect_name, priced=True)
    )
    return stmt


@functools.cache
def hold(dialect_name: str, *, within_ceiling: bool) -> Insert:
    """A reservation's hold: its units added to the counter's holds (a new counter: no
    usage yet, the holds only). `within_ceiling`: only if the counter's usage and holds
    together stay at most `most`, judged on the locked row as `add_within` does;
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
def raise_counter(dialect_name: str) -> Insert:
    """A peak (seats, a max): the counter rises to the proposed value if that is higher,
    noting when it crosses the org's limit as `add_to_counters` does. Answers the counter's
    key with its value, so that one statement can raise a batch of counters."""
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
    ).returning(*_batch_answer(dialect_name))


@functools.cache
def take_last(dialect_name: str) -> Insert:
    """A latest: the counter takes the proposed value if the line it is from (`last_at`,
    `last_key`) stands after the one the counter's value is from (or it has none), noting
    when it crosses the org's limit as `add_to_counters` does. Whatever order writers come
    in, the counter ends with the last line's value. Answers the counter's key with its
    value."""
    counters = usage_counters.c
    stmt = _new_counter(dialect_name)
    new = stmt.excluded

    def key(column: Any) -> Any:
        return in_code_point_order(column, dialect_name)

    later = or_(
        counters.last_at.is_(None),
        tuple_(new.last_at, key(new.last_key)) > tuple_(counters.last_at, key(counters.last_key)),
    )
    taken = case((later, new.quantity), else_=counters.quantity)
    return stmt.on_conflict_do_update(
        index_elements=[counters.org_id, counters.period_start, counters.metric],
        set_={
            "quantity": taken,
            "last_at": case((later, new.last_at), else_=counters.last_at),
            "last_key": case((later, new.last_key), else_=counters.last_key),
            "crossed_at": _crossing(counters.quantity, taken, _stored_limit()),
            "updated_at": new.updated_at,
        },
    ).returning(*_batch_answer(dialect_name))


@functools.cache
def pg_record_within(*, within_ceiling: bool) -> Any:
    """PostgreSQL: one event, its line and its counter in one statement, the event's key first
    (as every other writer takes them: a used key stops before the counter's row is locked). The
    counter is added to only for an event this statement inserted, and only within
    `most` when `within_ceiling`. One row back: how many events were inserted (0: the key
    was used), and the counter's usage and holds after (NULL: it did not fit, and the
    caller takes the event back)."""
    events, keys = usage_events.c, usage_event_keys.c
    lines, counters = usage_lines.c, usage_counters.c
    keyed = (
        postgresql.insert(usage_event_keys)
        .values(
            org_id=bindparam("e_org", type_=keys.org_id.type),
            idempotency_key=bindparam("e_key", type_=keys.idempotency_key.type),
            occurred_at=bindparam("e_occurred", type_=keys.occurred_at.type),
        )
        .on_conflict_do_nothing(index_elements=[keys.org_id, keys.idempotency_key])
        .returning(keys.org_id, keys.idempotency_key)
        .cte("keyed")
    )
    recorded = (
        postgresql.insert(usage_events)
        .from_select(
            [
                "org_id",
                "idempotency_key",
                "event",
                "quantity",
                "occurred_at",
                "received_at",
                "time_given",
            ],
            select(
                keyed.c.org_id,
                keyed.c.idempotency_key,
                bindparam("e_metric", type_=events.event.type),
                bindparam("e_quantity", type_=events.quantity.type),
                bindparam("e_occurred", type_=events.occurred_at.type),
                bindparam("e_received", type_=events.received_at.type),
                bindparam("e_given", type_=events.time_given.type),
            ),
        )
        .returning(events.org_id, events.idempotency_key, events.quantity)
        .cte("recorded")
    )
    lined = (
        postgresql.insert(usage_lines)
        .from_select(
            ["org_id", "idempotency_key", "metric", "quantity", "occurred_at", "period_start"],
            select(
                recorded.c.org_id,
                recorded.c.idempotency_key,
                bindparam("for_metric", type_=lines.metric.type),
                recorded.c.quantity,
                bindparam("e_occurred", type_=lines.occurred_at.type),
                bindparam("e_period", type_=lines.period_start.type),
            ),
        )
        .returning(lines.quantity)
        .cte("lined")
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
        lined.c.quantity,
        now,
        case((lined.c.quantity > limit, now)),
        literal(0),
    ).select_from(lined)
    # Every column named: the Python-side default of `reserved` is not applied to an INSERT
    # that is not the WITH's first.
    stmt = postgresql.insert(usage_counters).from_select(
        ["org_id", "period_start", "metric", "quantity", "updated_at", "crossed_at", "reserved"],
        proposed,
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
        .returning(counters.quantity, counters.reserved, *_answered("postgresql", priced=True))
        .cte("counted")
    )
    return select(
        select(func.count()).select_from(recorded).scalar_subquery().label("inserted"),
        *(select(counted.c[name]).scalar_subquery().label(name) for name in _COUNTED),
    )


_COUNTED = (
    "quantity",
    "reserved",
    "alert_limit",
    "alert_thresholds",
    "price_terms",
    "in_full",
)
"""What `pg_record_within` answers of the counter it wrote."""


@functools.cache
def month_priced() -> Any:
    """Every counter of one org's month (`org_id`, `period_start`), with what it is judged
    and priced by at the org's terms as they stand, and the fee of the org's plan (the same
    on every row): what `usage.bounds.month_total` adds up."""
    counters = usage_counters.c
    return select(
        counters.quantity,
        included_quantity_of(counters.org_id, counters.metric).label("included"),
        price_terms_of(counters.org_id, counters.metric).label("price_terms"),
        monthly_fee_of(counters.org_id).label("fee"),
    ).where(
        counters.org_id == bindparam("org_id", type_=counters.org_id.type),
        counters.period_start == bindparam("period_start", type_=counters.period_start.type),
    )


@functools.cache
def note_priced_month(dialect_name: str) -> Insert:
    """Note an org month (`org_id`, `period_start`) as priced in full on every write, and
    hold its row until the transaction ends: writes that price one month do it one at a
    time, each seeing what the one before it committed."""
    noted = usage_priced_months.c
    stmt = upsert_for(dialect_name, usage_priced_months).values(
        org_id=bindparam("org_id", type_=noted.org_id.type),
        period_start=bindparam("period_start", type_=noted.period_start.type),
        noted_at=bindparam("now", type_=noted.noted_at.type),
    )
    return stmt.on_conflict_do_update(
        index_elements=[noted.org_id, noted.period_start], set_={"noted_at": noted.noted_at}
    )
