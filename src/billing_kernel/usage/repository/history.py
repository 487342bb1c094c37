"""Usage read back: an org's event lines in time order, its usage per day, month and
property value, and its counters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB

from billing_kernel.db.lines import rank_last_first
from billing_kernel.db.tables import (
    usage_counters,
    usage_events,
    usage_lines,
    usage_repeats,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.metrics.rules import Aggregation
from billing_kernel.usage.repository import event_sql
from billing_kernel.usage.rules import (
    EventPosition,
    StoredEvent,
)


def _lines_with_events() -> FromClause:
    """Each line with the event it is of (for the event's properties and receive time)."""
    return usage_lines.join(usage_events, event_sql.stored_under(usage_lines.c))


def _with_repeats(source: FromClause, keys: Any) -> FromClause:
    """`source` (lines or events, whose columns are `keys`) with how often each key was
    sent again with another payload and answered as a duplicate (`usage_repeats`)."""
    again = usage_repeats.c
    return source.outerjoin(
        usage_repeats,
        and_(again.org_id == keys.org_id, again.idempotency_key == keys.idempotency_key),
    )


def _per_bucket(
    keys: Sequence[ColumnElement[Any]],
    source: FromClause,
    where: Sequence[ColumnElement[bool]],
    aggregations: Mapping[str, Aggregation],
    dialect_name: str,
) -> list[Select[Any]]:
    """Queries of the usage of the lines of `source` that pass `where`, per `keys` (the
    first a bucket, the second the metric): their sum, a max's highest (the metrics
    `aggregations` says are maxima), or a latest's last line (by event time, then key).
    Each row: the keys, then the usage."""
    lines = usage_lines.c
    highest = sorted(m for m, how in aggregations.items() if how is Aggregation.MAX)
    last = sorted(m for m, how in aggregations.items() if how is Aggregation.LATEST)
    usage: ColumnElement[Any] = func.sum(lines.quantity)
    if highest:
        usage = case((lines.metric.in_(highest), func.max(lines.quantity)), else_=usage)
    summed = select(*keys, usage).select_from(source).where(*where).group_by(*keys)
    if not last:
        return [summed]
    rank = rank_last_first(keys, dialect_name)
    named = [key.label(f"k{n}") for n, key in enumerate(keys)]
    ranked = (
        select(*named, lines.quantity, rank.label("rank"))
        .select_from(source)
        .where(*where, lines.metric.in_(last))
        .subquery()
    )
    return [
        summed.where(lines.metric.not_in(last)),
        select(*(ranked.c[key.name] for key in named), ranked.c.quantity).where(ranked.c.rank == 1),
    ]


def _day(value: date | str) -> date:
    """A date as the database answers it (SQLite: ISO text)."""
    return value if isinstance(value, date) else date.fromisoformat(value)


class UsageHistory:
    """What an org's usage was, read back (nothing here writes)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def daily_totals(
        self,
        org_id: str,
        period_start: date,
        aggregations: Mapping[str, Aggregation] | None = None,
    ) -> dict[tuple[date, str], int]:
        """The org's accepted usage in one period per UTC day and metric: summed, or for the
        metrics `aggregations` says are maxima or latest, the day's highest or last."""
        occurred = usage_lines.c.occurred_at
        day = (
            func.date(func.timezone("UTC", occurred))
            if self._conn.dialect.name == "postgresql"
            else func.date(occurred)  # SQLite stores UTC text
        )
        where = [usage_lines.c.org_id == org_id, usage_lines.c.period_start == period_start]
        totals = {}
        for query in _per_bucket(
            [day.label("day"), usage_lines.c.metric],
            usage_lines,
            where,
            aggregations or {},
            self._conn.dialect.name,
        ):
            for value, metric, total in await self._conn.execute(query):
                totals[_day(value), metric] = int(total)
        return totals

    async def grouped_totals(
        self,
        org_id: str,
        first: date,
        end: date,
        prop: str,
        *,
        by_day: bool,
        aggregations: Mapping[str, Aggregation] | None = None,
    ) -> dict[tuple[date, str], dict[str | None, int]]:
        """The org's accepted usage in the periods starting in `[first, end)`, per month (or
        per UTC day) and metric, split by the text value of the property `prop` (None for
        events without it); for the metrics `aggregations` says are maxima or latest, each
        split's highest or last line."""
        e = usage_lines.c
        if self._conn.dialect.name == "postgresql":
            bucket = func.date(func.timezone("UTC", e.occurred_at)) if by_day else e.period_start
        else:
            bucket = func.date(e.occurred_at) if by_day else e.period_start
        value = self._property_text(prop)
        where = [e.org_id == org_id, e.period_start >= first, e.period_start < end]
        keys = [bucket.label("bucket"), e.metric, value.label("value")]
        totals: dict[tuple[date, str], dict[str | None, int]] = {}
        for query in _per_bucket(
            keys, _lines_with_events(), where, aggregations or {}, self._conn.dialect.name
        ):
            for start, metric, group, total in await self._conn.execute(query):
                totals.setdefault((_day(start), metric), {})[group] = int(total)
        return totals

    async def value_totals(
        self,
        org_id: str,
        period_start: date,
        metric: str,
        prop: str,
        values: Sequence[str],
        *,
        invoice_id: str | None = None,
        unbilled: bool = False,
    ) -> dict[str, int]:
        """The sum of the org's lines of `metric` in a period whose events' property `prop`
        has one of `values` (as text), per value: of every line, of those an invoice billed
        (`invoice_id`), or of those none billed yet (`unbilled`). A metric priced per value
        reads its values' usage so (for a sum or a count, lines add up)."""
        e = usage_lines.c
        value = self._property_text(prop)
        where = [
            e.org_id == org_id,
            e.period_start == period_start,
            e.metric == metric,
            value.in_(list(values)),
        ]
        if invoice_id is not None:
            where.append(e.invoice_id == invoice_id)
        elif unbilled:
            where.append(e.invoice_id.is_(None))
        query = (
            select(value.label("value"), func.sum(e.quantity))
            .select_from(_lines_with_events())
            .where(*where)
            .group_by(value)
        )
        return {found: int(total) for found, total in await self._conn.execute(query)}

    async def value_events(
        self, org_id: str, period_start: date, metric: str, prop: str, values: Sequence[str]
    ) -> dict[str, int]:
        """How many of the org's events of `metric` in a period have each of `values` as
        their property `prop` (as text): one line each."""
        e = usage_lines.c
        value = self._property_text(prop)
        query = (
            select(value.label("value"), func.count())
            .select_from(_lines_with_events())
            .where(
                e.org_id == org_id,
                e.period_start == period_start,
                e.metric == metric,
                value.in_(list(values)),
            )
            .group_by(value)
        )
        return {found: int(count) for found, count in await self._conn.execute(query)}

    def _property_text(self, prop: str) -> ColumnElement[Any]:
        """The text of an event's property `prop` (None without it), as PostgreSQL's `->>`
        gives it on both databases: `true`, `false`, a number as JSON writes it."""
        properties = usage_events.c.properties
        if self._conn.dialect.name == "postgresql":
            return func.jsonb_extract_path_text(cast(properties, JSONB), prop)
        path = f'$."{prop}"'
        kind = func.json_type(properties, path)
        return case(
            (kind.in_(["true", "false"]), kind),
            (kind == "null", null()),
            else_=cast(func.json_extract(properties, path), String),
        )

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

    async def events(
        self,
        org_id: str,
        *,
        metric: str | None,
        event: str | None,
        start: datetime | None,
        end: datetime | None,
        after: EventPosition | None,
        limit: int,
        offset: int = 0,
        through: EventPosition | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` of the org's event lines in time order (then key and metric order)
        after the position `after` (and `offset` more) and up to `through` (included), of
        one metric or all, of one event name or all, that occurred from `start` until
        `end`. An event no metric counts is one line without a metric (its position's metric
        is ""), unless a metric is asked for.

        Each part (the lines; the events no metric counts, through their partial index) is
        cut to `offset + limit` in order before the two are merged, so a page reads no more
        than that of either."""
        e, sent, again = usage_lines.c, usage_events.c, usage_repeats.c
        wanted = offset + limit
        lines: Select[Any] = select(
            e.idempotency_key,
            e.metric,
            e.quantity,
            e.occurred_at,
            sent.received_at,
            e.invoice_id,
            sent.properties,
            case((sent.quantity.is_(None), sent.event)).label("event"),
            again.times,
            again.last_at,
            e.metric.label("sort_metric"),
        ).select_from(_with_repeats(_lines_with_events(), e))
        lines = self._within(
            lines.where(e.org_id == org_id),
            (e.occurred_at, e.idempotency_key, e.metric),
            start=start,
            end=end,
            after=after,
            through=through,
        )
        if metric is not None:
            lines = lines.where(e.metric == metric)
        if event is not None:
            lines = lines.where(sent.event == event, sent.quantity.is_(None))
        parts = [lines.order_by(e.occurred_at, e.idempotency_key, e.metric).limit(wanted)]
        if metric is None:
            nothing = literal("", e.metric.type)
            uncounted: Select[Any] = select(
                sent.idempotency_key,
                null().label("metric"),
                literal(0).label("quantity"),
                sent.occurred_at,
                sent.received_at,
                null().label("invoice_id"),
                sent.properties,
                sent.event,
                again.times,
                again.last_at,
                nothing.label("sort_metric"),
            )
            uncounted = uncounted.select_from(_with_repeats(usage_events, sent)).where(
                sent.org_id == org_id, sent.counted.is_(False)
            )
            uncounted = self._within(
                uncounted,
                (sent.occurred_at, sent.idempotency_key, nothing),
                start=start,
                end=end,
                after=after,
                through=through,
            )
            if event is not None:
                uncounted = uncounted.where(sent.event == event)
            parts.append(uncounted.order_by(sent.occurred_at, sent.idempotency_key).limit(wanted))
        merged = union_all(*(select(part.subquery()) for part in parts)).subquery()
        m = merged.c
        query = (
            select(
                m.idempotency_key,
                m.metric,
                m.quantity,
                m.occurred_at,
                m.received_at,
                m.invoice_id,
                m.properties,
                m.event,
                func.coalesce(m.times, 0),
                m.last_at,
            )
            .order_by(m.occurred_at, m.idempotency_key, m.sort_metric)
            .limit(limit)
            .offset(offset)
        )
        return [
            StoredEvent(*row[:8], changed_repeats=row[8], last_changed_repeat_at=row[9])
            for row in await self._conn.execute(query)
        ]

    @staticmethod
    def _within(
        query: Select[Any],
        position: tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]],
        *,
        start: datetime | None,
        end: datetime | None,
        after: EventPosition | None,
        through: EventPosition | None,
    ) -> Select[Any]:
        """`query` narrowed to the lines whose (time, key, metric) `position` is inside the
        window: from `start` until `end`, after `after`, up to `through` (included)."""
        occurred_at = position[0]
        if start is not None:
            query = query.where(occurred_at >= start)
        if end is not None:
            query = query.where(occurred_at < end)
        if after is not None:
            query = query.where(tuple_(*position) > _as_stored(after))
        if through is not None:
            query = query.where(tuple_(*position) <= _as_stored(through))
        return query

    async def counters_for_period(self, org_id: str, period_start: date) -> dict[str, int]:
        """The org's counters for one period, by metric."""
        result = await self._conn.execute(
            select(usage_counters.c.metric, usage_counters.c.quantity).where(
                usage_counters.c.org_id == org_id, usage_counters.c.period_start == period_start
            )
        )
        return dict(result.all())

    async def event_counts(self, org_id: str, period_start: date) -> dict[str, int]:
        """How many events the org sent per metric in one period."""
        e = usage_lines.c
        result = await self._conn.execute(
            select(e.metric, func.count())
            .where(e.org_id == org_id, e.period_start == period_start)
            .group_by(e.metric)
        )
        return {metric: int(count) for metric, count in result.all()}


def _as_stored(position: EventPosition) -> Any:
    """An event line's position as its columns store it (SQLite keeps times as text), to
    compare positions in SQL."""
    e = usage_lines.c
    moment, key, metric = position
    return tuple_(
        literal(moment, e.occurred_at.type),
        literal(key, e.idempotency_key.type),
        literal(metric, e.metric.type),
    )
