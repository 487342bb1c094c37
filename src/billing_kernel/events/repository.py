"""The event log (`billing_events`): events added once each, in the order written (`seq`),
and read back newest first. Adding one notifies the delivery worker when the transaction
commits."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select

from billing_kernel.db.database import EVENTS_CHANNEL, notify, upsert
from billing_kernel.db.tables import billing_events
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.events.rules import Event, EventType


class EventRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def insert_events(self, events: Sequence[Event]) -> None:
        """Add events to the log; an event already there (the same id) is kept as it is.
        The delivery worker is notified when the transaction commits."""
        if not events:
            return
        await notify(self._conn, EVENTS_CHANNEL)
        await self._conn.execute(
            upsert(self._conn, billing_events).on_conflict_do_nothing(
                index_elements=[billing_events.c.event_id]
            ),
            [
                {
                    "event_id": e.event_id,
                    "event_type": str(e.event_type),
                    "org_id": e.org_id,
                    "created_at": e.created_at,
                    "payload": json.dumps(e.payload(), separators=(",", ":")),
                }
                for e in events
            ],
        )

    async def events(
        self,
        *,
        org_id: str | None,
        types: Sequence[EventType] = (),
        after: int | None = None,
        limit: int = 50,
    ) -> list[tuple[int, Event]]:
        """Events newest first (an org's, or all when `org_id` is None), optionally only of
        some types, written before the event numbered `after`, for the next page; each
        with its number in the log."""
        ev = billing_events.c
        query = select(billing_events)
        if org_id is not None:
            query = query.where(ev.org_id == org_id)
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
