"""Recording usage: events, their lines, unique values and the per-period counters they add
to, by set-based atomic SQL (the statements themselves are `event_sql.py` and
`counter_sql.py`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Insert,
    bindparam,
    delete,
    select,
    update,
    values,
)

from billing_kernel.alerts.rules import AlertTerms, Reading
from billing_kernel.common.keys import CounterKey
from billing_kernel.db.database import upsert
from billing_kernel.db.tables import (
    usage_counters,
    usage_event_keys,
    usage_events,
    usage_lines,
    usage_repeats,
    usage_skips,
    usage_unique_values,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.metrics.rules import Position
from billing_kernel.usage.bounds import (
    Charge,
    Moved,
    charge_of,
)
from billing_kernel.usage.repository import counter_sql, event_sql
from billing_kernel.usage.rules import (
    Counter,
    LineKey,
    UsageEvent,
)

EventKey = tuple[str, str]
"""(org_id, idempotency_key)"""


@dataclass(frozen=True, slots=True)
class Written:
    """What `UsageRepository.write_events` did."""

    inserted: set[EventKey]
    """The keys of the events it inserted."""
    differs: dict[EventKey, bool]
    """For keys it skipped (already stored) whose stored event it compared with the one sent:
    whether they differ (an idempotency conflict) or not (a repeat). A skipped key missing
    here was not compared: `conflicts` tells."""


def _line_rows(events: Sequence[UsageEvent]) -> list[dict[str, Any]]:
    """The rows of usage_lines that `events` add."""
    return [
        {
            "org_id": e.org_id,
            "idempotency_key": e.idempotency_key,
            "metric": line.metric,
            "quantity": line.quantity,
            "occurred_at": e.occurred_at,
            "period_start": e.period_start,
        }
        for e in events
        for line in e.lines
        if line.value is None  # a unique count's: `insert_unique_lines`
    ]


def _reading(row: Any) -> Reading:
    return Reading(row.quantity, AlertTerms(row.alert_limit, row.alert_thresholds))


def _moved(row: Any) -> Moved:
    """A counter a batch's write returned, with its alert terms and its price terms."""
    return Moved(
        _reading(row),
        charge_of(row.quantity, row.alert_limit, row.price_terms),
        bool(row.in_full),
    )


def _counter(row: Any) -> Counter:
    """A counter a write returned: usage and holds, and the alert and price terms when it
    read them."""
    terms = moved = None
    if getattr(row, "alert_thresholds", None) is not None:
        terms = AlertTerms(row.alert_limit, row.alert_thresholds)
        moved = _moved(row)
    return Counter(row.quantity, row.reserved, terms, moved)


class UsageRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def insert_events(self, events: Sequence[UsageEvent]) -> set[EventKey]:
        """Insert the events whose keys are new, with their lines; returns the keys that were
        inserted (see `write_events`)."""
        return (await self.write_events(events)).inserted

    async def write_events(self, events: Sequence[UsageEvent]) -> Written:
        """Insert the events whose keys are new, with their lines: the keys inserted, and,
        on PostgreSQL, for those it skipped, whether what is stored under them differs.

        The events are received together (one receive time), each under a key of its own
        (the service judges a key repeated in a batch by its first use). A key already
        stored is skipped by `usage_event_keys`' primary key, so concurrent senders of one
        key insert it once, whichever month each stamps it in; only the sender that inserted
        a key writes its event and lines.
        """
        if not events:
            return Written(set(), {})
        received_at = events[0].received_at
        if any(e.received_at != received_at for e in events):
            raise ValueError("events written together share one receive time")
        if len({(e.org_id, e.idempotency_key) for e in events}) < len(events):
            raise ValueError("events written together have keys of their own")
        if self._conn.dialect.name == "postgresql":
            lines = [  # a named event's; a unique count's wait for `insert_unique_lines`
                (n, line)
                for n, e in enumerate(events, 1)
                if e.quantity is None
                for line in e.lines
                if line.value is None
            ]
            result = await self._conn.execute(
                event_sql.PG_INSERT_EVENTS,
                {
                    "org_id": event_sql.joined([e.org_id for e in events]),
                    "idempotency_key": event_sql.joined([e.idempotency_key for e in events]),
                    "name": event_sql.joined([e.name for e in events]),
                    "quantity": [e.quantity for e in events],
                    "occurred_at": [e.occurred_at for e in events],
                    "received_at": received_at,
                    "time_given": [e.occurred_at_given for e in events],
                    "counted": [e.counted for e in events],
                    "properties": event_sql.joined([e.properties for e in events]),
                    "l_n": [n for n, _ in lines],
                    "l_metric": [line.metric for _, line in lines],
                    "l_quantity": [line.quantity for _, line in lines],
                },
            )
            skipped = {row.position: row.differs for row in result}
            inserted, differs = set(), {}
            for n, e in enumerate(events):
                if n not in skipped:
                    inserted.add((e.org_id, e.idempotency_key))
                elif skipped[n] is not None:
                    differs[e.org_id, e.idempotency_key] = skipped[n]
            return Written(inserted, differs)
        keys = usage_event_keys.c
        result = await self._conn.execute(
            upsert(self._conn, usage_event_keys)
            .on_conflict_do_nothing(index_elements=[keys.org_id, keys.idempotency_key])
            .returning(keys.org_id, keys.idempotency_key),
            [
                {
                    "org_id": e.org_id,
                    "idempotency_key": e.idempotency_key,
                    "occurred_at": e.occurred_at,
                }
                for e in events
            ],
        )
        inserted = {(org_id, key) for org_id, key in result}
        new = [e for e in events if (e.org_id, e.idempotency_key) in inserted]
        if new:
            await self._conn.execute(
                usage_events.insert(),
                [
                    {
                        "org_id": e.org_id,
                        "idempotency_key": e.idempotency_key,
                        "event": e.name,
                        "quantity": e.quantity,
                        "occurred_at": e.occurred_at,
                        "received_at": received_at,
                        "time_given": e.occurred_at_given,
                        "properties": e.properties,
                        "counted": e.counted,
                    }
                    for e in new
                ],
            )
        rows = _line_rows(new)
        if rows:
            await self._conn.execute(usage_lines.insert(), rows)
        return Written(inserted, {})

    async def insert_unique_lines(self, events: Sequence[UsageEvent]) -> dict[LineKey, int]:
        """The lines of unique counts of `events` (new, just inserted, in key order): each
        value goes into the period's seen values unless there already, and its line is 1
        when it went in (for the first event of the batch with it), else 0. Concurrent
        batches with one value: one inserts it, the other waits for that row and skips it.
        Returns each such line's quantity."""
        unique = [(e, line) for e in events for line in e.lines if line.value is not None]
        if not unique:
            return {}
        values = sorted({(e.org_id, e.period_start, line.metric, line.value) for e, line in unique})
        seen = usage_unique_values.c
        new = {
            tuple(row)
            for row in (
                await self._conn.execute(
                    upsert(self._conn, usage_unique_values)
                    .on_conflict_do_nothing()
                    .returning(seen.org_id, seen.period_start, seen.metric, seen.value),
                    [
                        {"org_id": o, "period_start": p, "metric": m, "value": v}
                        for o, p, m, v in values
                    ],
                )
            )
        }
        counted: dict[LineKey, int] = {}
        for e, line in unique:
            value = (e.org_id, e.period_start, line.metric, line.value)
            counted[e.org_id, e.idempotency_key, line.metric] = int(value in new)
            new.discard(value)  # the batch's first event with it counts it
        await self._conn.execute(
            usage_lines.insert(),
            [
                {
                    "org_id": e.org_id,
                    "idempotency_key": e.idempotency_key,
                    "metric": line.metric,
                    "quantity": counted[e.org_id, e.idempotency_key, line.metric],
                    "occurred_at": e.occurred_at,
                    "period_start": e.period_start,
                }
                for e, line in unique
            ],
        )
        return counted

    async def delete_event(self, event: UsageEvent) -> None:
        """Take back an event this transaction inserted, with its key and lines (its usage
        was refused); on PostgreSQL only its month's partitions are read."""
        lines, stored = usage_lines.c, usage_events.c
        for table, its in (
            (usage_lines, [lines.period_start == event.period_start]),
            (usage_events, [stored.occurred_at == event.occurred_at]),
            (usage_event_keys, []),
        ):
            await self._conn.execute(
                delete(table).where(
                    table.c.org_id == event.org_id,
                    table.c.idempotency_key == event.idempotency_key,
                    *its,
                )
            )

    async def conflicts(self, events: Sequence[UsageEvent]) -> set[int]:
        """The positions in `events` of those whose key is stored with another payload
        (idempotency conflicts); the others repeat what is stored. Compared in SQL: nothing
        stored is read back."""
        if not events:
            return set()
        rows = [
            (
                n,
                e.org_id,
                e.idempotency_key,
                e.name,
                e.quantity,
                e.occurred_at,
                e.occurred_at_given,
                e.properties,
            )
            for n, e in enumerate(events)
        ]
        if self._conn.dialect.name == "postgresql":
            columns = {c.name: [row[i] for row in rows] for i, c in enumerate(event_sql.PAYLOAD)}
            result = await self._conn.execute(event_sql.PG_CONFLICTS, columns)
        else:
            sent = values(*event_sql.PAYLOAD, name="sent").data(rows).cte("sent")
            result = await self._conn.execute(event_sql.conflicts_with(sent))
        return set(result.scalars())

    async def has_event(self, org_id: str, idempotency_key: str) -> bool:
        """Whether the org has an event under `idempotency_key`."""
        keys = usage_event_keys.c
        query = select(keys.org_id).where(
            keys.org_id == org_id, keys.idempotency_key == idempotency_key
        )
        return (await self._conn.execute(query)).first() is not None

    async def add_to_counters(
        self, increments: Mapping[CounterKey, int], now: datetime
    ) -> dict[CounterKey, Moved]:
        """Add to each counter in one atomic upsert (`quantity = quantity + excluded.quantity`);
        returns each counter's new total, as this transaction sees it, with its alert terms
        and its charge.

        Callers pass the increments in a stable order so that concurrent batches lock counter
        rows in the same order and cannot deadlock.
        """
        if not increments:
            return {}
        result = await self._conn.execute(
            counter_sql.add_to_counters(self._conn.dialect.name),
            [counter_sql.counter_row(key, quantity, now) for key, quantity in increments.items()],
        )
        return {CounterKey(row.org_id, row.period_start, row.metric): _moved(row) for row in result}

    async def add_skips(self, skips: Mapping[CounterKey, int], now: datetime) -> None:
        """Add to how many events each meter skipped per org and month, in one upsert;
        passed in a stable order, as `add_to_counters`."""
        if not skips:
            return
        stmt, skips_c = upsert(self._conn, usage_skips), usage_skips.c
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[skips_c.org_id, skips_c.period_start, skips_c.metric],
                set_={
                    "events": skips_c.events + stmt.excluded.events,
                    "updated_at": stmt.excluded.updated_at,
                },
            ),
            [
                {
                    "org_id": key.org_id,
                    "period_start": key.period_start,
                    "metric": key.metric,
                    "events": events,
                    "updated_at": now,
                }
                for key, events in skips.items()
            ],
        )

    async def note_repeats(self, keys: Mapping[EventKey, int], now: datetime) -> None:
        """Count, per (org, key), the times it was sent again with another payload and
        answered as a duplicate (`usage_repeats`), in one upsert; keys in a stable order."""
        if not keys:
            return
        stmt, repeats = upsert(self._conn, usage_repeats), usage_repeats.c
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[repeats.org_id, repeats.idempotency_key],
                set_={"times": repeats.times + stmt.excluded.times, "last_at": now},
            ),
            [
                {"org_id": org_id, "idempotency_key": key, "times": times, "last_at": now}
                for (org_id, key), times in sorted(keys.items())
            ],
        )

    async def raise_counters(
        self, peaks: Mapping[CounterKey, int], now: datetime
    ) -> dict[CounterKey, Moved]:
        """Raise each counter to its value where that is higher (a max), in one atomic upsert
        (`raise_counter`); returns each counter's value after, with its alert terms and its
        charge. Passed
        in a stable order, as `add_to_counters`."""
        if not peaks:
            return {}
        result = await self._conn.execute(
            counter_sql.raise_counter(self._conn.dialect.name),
            [counter_sql.counter_row(key, value, now) for key, value in peaks.items()],
        )
        return {CounterKey(row.org_id, row.period_start, row.metric): _moved(row) for row in result}

    async def take_lasts(
        self, lasts: Mapping[CounterKey, tuple[Position, int]], now: datetime
    ) -> dict[CounterKey, Moved]:
        """Set each counter to its value where the line it is from stands after the one the
        counter's value is from (a latest), in one atomic upsert (`take_last`); returns each
        counter's value after, with its alert terms and its charge. Passed in a stable order, as
        `add_to_counters`."""
        if not lasts:
            return {}
        result = await self._conn.execute(
            counter_sql.take_last(self._conn.dialect.name),
            [
                counter_sql.counter_row(key, value, now)
                | {"last_at": at.occurred_at, "last_key": at.idempotency_key}
                for key, (at, value) in lasts.items()
            ],
        )
        return {CounterKey(row.org_id, row.period_start, row.metric): _moved(row) for row in result}

    async def month_priced(
        self, org_id: str, period_start: date, now: datetime
    ) -> tuple[Decimal | None, list[Charge]]:
        """The org's month at its terms as they stand: the fee of its plan (None: it has no
        plan), and each of its counters' charges (`usage.bounds.month_total` adds them up).
        The month is first noted as priced in full on every write from now on, and held:
        concurrent writers price it one at a time."""
        month = {"org_id": org_id, "period_start": period_start}
        await self._conn.execute(
            counter_sql.note_priced_month(self._conn.dialect.name), month | {"now": now}
        )
        rows = (await self._conn.execute(counter_sql.month_priced(), month)).all()
        charges = [charge_of(r.quantity, r.included, r.price_terms) for r in rows]
        return (rows[0].fee if rows else None), charges

    async def add_within(
        self, key: CounterKey, quantity: int, most: int | None, now: datetime
    ) -> Counter | None:
        """Add `quantity` to the counter if its total and its holds together stay at most
        `most` (None: no bound), in one atomic statement; returns the counter after, or
        None when it would not fit (and nothing was written)."""
        if most is not None and quantity > most:  # never below zero: it cannot fit
            return None
        return await self._counter_write(
            counter_sql.add_within(self._conn.dialect.name, within_ceiling=most is not None),
            counter_sql.counter_row(key, quantity, now) | counter_sql.bound(most),
        )

    async def record_within(
        self, event: UsageEvent, most: int | None
    ) -> tuple[bool, Counter | None]:
        """Insert `event` and add it to its counter if the counter's total and holds stay at
        most `most` (None: no bound), the event first. Returns (inserted, counter after):
        not inserted when the org already used the key (nothing written); no counter when
        it did not fit, the event then being inserted, for the caller to take back. On
        PostgreSQL, one statement (`_pg_record_within`) does both."""
        [line] = event.lines  # a report of one metric's quantity
        fits_alone = most is None or line.quantity <= most  # else no new counter may hold it
        if self._conn.dialect.name == "postgresql" and fits_alone:
            row = (
                await self._conn.execute(
                    counter_sql.pg_record_within(within_ceiling=most is not None),
                    {
                        "e_org": event.org_id,
                        "e_key": event.idempotency_key,
                        "e_metric": line.metric,
                        "e_quantity": line.quantity,
                        "e_occurred": event.occurred_at,
                        "e_received": event.received_at,
                        "e_period": event.period_start,
                        "e_given": event.occurred_at_given,
                        "for_org": event.org_id,
                        "for_metric": line.metric,
                        "now": event.received_at,
                    }
                    | counter_sql.bound(most),
                )
            ).one()
            after = None if row.quantity is None else _counter(row)
            return bool(row.inserted), after
        if not await self.insert_events([event]):
            return False, None
        key = CounterKey(event.org_id, event.period_start, line.metric)
        return True, await self.add_within(key, line.quantity, most, event.received_at)

    async def hold_within(
        self, key: CounterKey, quantity: int, most: int | None, now: datetime
    ) -> Counter | None:
        """Add `quantity` to the counter's holds if its usage and holds together stay at
        most `most` (None: no bound), in one atomic statement; returns the counter after,
        or None when they would not fit (and nothing was written)."""
        if most is not None and quantity > most:
            return None
        return await self._counter_write(
            counter_sql.hold(self._conn.dialect.name, within_ceiling=most is not None),
            counter_sql.counter_row(key, 0, now) | {"reserved": quantity} | counter_sql.bound(most),
        )

    async def _counter_write(
        self, statement: Insert, parameters: dict[str, object]
    ) -> Counter | None:
        found = (await self._conn.execute(statement, parameters)).first()
        return None if found is None else _counter(found)

    async def add_releasing(
        self, key: CounterKey, quantity: int, released: int, now: datetime
    ) -> Moved:
        """Add `quantity` to the counter and take `released` off its holds, atomically;
        returns the counter's usage after, with its alert terms and its charge."""
        result = await self._conn.execute(
            counter_sql.add_releasing(self._conn.dialect.name),
            counter_sql.counter_row(key, quantity, now) | {"released": released},
        )
        return _moved(result.one())

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
            counter_sql.raise_counter(self._conn.dialect.name),
            counter_sql.counter_row(key, value, now),
        )
        return _reading(result.one())
