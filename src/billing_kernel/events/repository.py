"""The event log (`billing_events`): events added once each (an org's event by its id), in
the order written (`seq`), and read back newest first. Adding one notifies the delivery
worker when the transaction commits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from billing_kernel.db.database import EVENTS_CHANNEL, notify, upsert
from billing_kernel.db.tables import billing_events
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.events.rules import FOR_OPERATORS, Event, EventType


class EventRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def insert_events(self, events: Sequence[Event]) -> None:
        """Add events to the log; an event already there (the same id) is kept as it is.
        The delivery worker is notified when the transaction commits."""
        if not events:
            return
        await notify(self._conn, EVENTS_CHANNEL)
        rows: list[dict[str, object]] = [
            {
                "event_id": e.event_id,
                "event_type": str(e.event_type),
                "org_id": e.org_id,
                "created_at": e.created_at,
                "payload": json.dumps(e.payload(), separators=(",", ":")),
            }
            for e in events
        ]
        if self._conn.dialect.name == "sqlite":
            # Only a lone integer key numbers itself there; one transaction writes at a time.
            last = select(func.coalesce(func.max(billing_events.c.seq), 0))
            after = (await self._conn.execute(last)).scalar_one()
            for number, row in enumerate(rows, start=after + 1):
                row["seq"] = number
        ev = billing_events.c
        await self._conn.execute(
            upsert(self._conn, billing_events).on_conflict_do_nothing(
                index_elements=[ev.org_id, ev.event_id]
            ),
            rows,
        )

    async def events(
        self,
        *,
        org_id: str | None,
        operators_too: bool = True,
        types: Sequence[EventType] = (),
        after: int | None = None,
        limit: int = 50,
    ) -> list[tuple[int, Event]]:
        """Events newest first (about an org, or all when `org_id` is None; without the
        operators' unless `operators_too`), optionally only of some types, written before
        the event numbered `after`, for the next page; each with its number in the log."""
        ev = billing_events.c
        query = select(billing_events)
        if org_id is not None:
            query = query.where(ev.org_id == org_id)
        if not operators_too:
            query = query.where(ev.event_type.not_in([str(t) for t in FOR_OPERATORS]))
        if types:
            query = query.where(ev.event_type.in_([str(t) for t in types]))
        if after is not None:
            query = query.where(ev.seq < after)
        result = await self._conn.execute(query.order_by(ev.seq.desc()).limit(limit))
        return [(row.seq, _event(row)) for row in result]


def _event(row: Any) -> Event:
    payload = json.loads(row.payload)
    return Event(
        event_id=row.event_id,
        event_type=EventType(row.event_type),
        org_id=row.org_id,
        created_at=row.created_at,
        data=payload["data"],
    )
