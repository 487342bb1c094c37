"""The statements that write usage events and their lines, and that compare a repeat of an
idempotency key with the event stored under it (`UsageEvent.is_replay_of`, in SQL: nothing
stored is read back). `usage/repository/recording.py` runs them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnClause,
    ColumnElement,
    FromClause,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    cast,
    column,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from billing_kernel.db.tables import usage_event_keys, usage_events
from billing_kernel.db.types import UTCDateTime

# On PostgreSQL a batch travels as one parameter per column and is unnested by the server: a
# few parameters instead of several per event, and one statement text for every batch size.
# A text column travels as one string, its values joined by U+001F (the unit separator) and
# split by the server: ids, keys and names hold no control character (`validate_id`,
# `validate_event_name`) and canonical JSON writes one escaped, and a string costs the
# driver far less to send than an array of a thousand. A missing value (no properties) is
# U+001E. The other columns travel as arrays.
#
# The lines go in with the events, only for the events this statement inserted: a report of
# a quantity's one line is the event itself (its name is the metric's key), straight from
# what the insert returned; a named event's lines are sent apart, each naming its event by
# position. A line's month is its event's UTC calendar month, as `BillingPeriod.containing`
# has it.
#
# Whether an event is new is decided by its key going into `usage_event_keys` (insert-or-skip,
# whichever month its time falls in); the event goes into `usage_events` (partitioned by
# month) only when its key did.
#
# Answered: each event it did not insert (none, usually), by position, with whether what is
# stored under its key differs from it (`UsageEvent.is_replay_of`, in SQL): NULL when the
# stored row is not in the statement's snapshot (a concurrent sender's, committed while this
# insert waited for it), for `PG_CONFLICTS` to compare. Written as a subquery per skipped event,
# one primary-key lookup each, so that its plan is the same for every batch.
PG_INSERT_EVENTS = text("""
    WITH sent AS (
        SELECT * FROM unnest(string_to_array(CAST(:org_id AS text), E'\\x1f'),
                             string_to_array(CAST(:idempotency_key AS text), E'\\x1f'),
                             string_to_array(CAST(:name AS text), E'\\x1f'),
                             CAST(:quantity AS bigint[]), CAST(:occurred_at AS timestamptz[]),
                             CAST(:time_given AS boolean[]), CAST(:counted AS boolean[]),
                             string_to_array(CAST(:properties AS text), E'\\x1f', E'\\x1e'))
            WITH ORDINALITY AS s (org_id, idempotency_key, event, quantity, occurred_at,
                                  time_given, counted, properties, n)
    ), keyed AS (
        INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at)
        SELECT org_id, idempotency_key, occurred_at FROM sent
        ON CONFLICT (org_id, idempotency_key) DO NOTHING
        RETURNING org_id, idempotency_key
    ), inserted AS (
        INSERT INTO usage_events (org_id, idempotency_key, event, quantity, occurred_at,
                                  received_at, time_given, counted, properties)
        SELECT org_id, idempotency_key, event, quantity, occurred_at,
               CAST(:received_at AS timestamptz), time_given, counted, properties
        FROM sent JOIN keyed USING (org_id, idempotency_key)
        RETURNING org_id, idempotency_key, event, quantity, occurred_at
    ), reported AS (
        INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at,
                                 period_start)
        SELECT org_id, idempotency_key, event, quantity, occurred_at,
               CAST(date_trunc('month', occurred_at AT TIME ZONE 'UTC') AS date)
        FROM inserted
        WHERE quantity IS NOT NULL
    ), lined AS (
        INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at,
                                 period_start)
        SELECT s.org_id, s.idempotency_key, line.metric, line.quantity, s.occurred_at,
               CAST(date_trunc('month', s.occurred_at AT TIME ZONE 'UTC') AS date)
        FROM unnest(CAST(:l_n AS bigint[]), CAST(:l_metric AS varchar[]),
                    CAST(:l_quantity AS bigint[])) AS line (n, metric, quantity)
        JOIN sent s USING (n)
        JOIN inserted i USING (org_id, idempotency_key)
    )
    SELECT s.n - 1 AS position,
           (SELECT e.event <> s.event
                   OR e.quantity IS DISTINCT FROM s.quantity
                   OR e.properties IS DISTINCT FROM s.properties
                   OR (e.time_given AND s.time_given AND e.occurred_at <> s.occurred_at)
            FROM usage_event_keys k
            JOIN usage_events e ON e.org_id = k.org_id
                               AND e.idempotency_key = k.idempotency_key
                               AND e.occurred_at = k.occurred_at
            WHERE k.org_id = s.org_id AND k.idempotency_key = s.idempotency_key) AS differs
    FROM sent s LEFT JOIN keyed i USING (org_id, idempotency_key)
    WHERE i.org_id IS NULL
      AND (SELECT count(*) FROM keyed) < (SELECT count(*) FROM sent)  -- else none skipped
""")
PAYLOAD: tuple[ColumnClause[Any], ...] = (
    column("n", Integer),
    column("org_id", String),
    column("idempotency_key", String),
    column("name", String),
    column("quantity", BigInteger),
    column("occurred_at", UTCDateTime),
    column("time_given", Boolean),
    column("properties", Text),
)
"""An event sent (its position `n`), as far as it tells a repeat from another use of its key."""

# On PostgreSQL the sent payloads travel as one array per column, as inserts do.
_PG_SENT = (
    func.unnest(*(cast(bindparam(c.name), ARRAY(c.type)) for c in PAYLOAD))
    .table_valued(*(c.name for c in PAYLOAD))
    .render_derived(name="sent")
)


def stored_under(keys: Any) -> ColumnElement[bool]:
    """Joins `usage_events` to the rows `keys` (of `usage_event_keys`, or of `usage_lines`,
    which carry their event's time) name: by key and time, so that on PostgreSQL only the
    event's month is read."""
    e = usage_events.c
    return and_(
        e.org_id == keys.org_id,
        e.idempotency_key == keys.idempotency_key,
        e.occurred_at == keys.occurred_at,
    )


def conflicts_with(sent: FromClause) -> Any:
    """The positions of the events `sent` whose key is stored with another payload: another
    name, quantity or properties, or another event time where both senders gave one."""
    e, keys, k = usage_events.c, usage_event_keys.c, sent.c
    differs: ColumnElement[bool] = or_(
        e.event != k.name,
        e.quantity.is_distinct_from(k.quantity),
        e.properties.is_distinct_from(k.properties),
        and_(e.time_given, k.time_given, e.occurred_at != k.occurred_at),
    )
    return (
        select(k.n)
        .select_from(sent)
        .join(
            usage_event_keys,
            and_(keys.org_id == k.org_id, keys.idempotency_key == k.idempotency_key),
        )
        .join(usage_events, stored_under(keys))
        .where(differs)
    )


PG_CONFLICTS = conflicts_with(_PG_SENT)


def joined(values: Sequence[str | None]) -> str:
    """A text column's values as `PG_INSERT_EVENTS` takes them: one string, joined by
    U+001F, None written U+001E. None of them holds either."""
    return "\x1f".join(["\x1e" if value is None else value for value in values])
