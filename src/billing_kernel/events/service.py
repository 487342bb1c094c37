"""The event log: any capability records what happened without knowing who delivers it
(`notifications/` does), and callers read it back newest first."""

from __future__ import annotations

from collections.abc import Sequence

from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.events.repository import EventRepository
from billing_kernel.events.rules import Event, EventType


class EventLog:
    def __init__(self, transactions: Transactions) -> None:
        self._tx = transactions

    async def record(self, events: Sequence[Event], uow: UnitOfWork | None = None) -> None:
        """Add events to the log (those already there are kept as they are); the delivery
        worker delivers them once the transaction commits."""
        async with self._tx.begin(uow) as unit:
            await EventRepository(unit).insert_events(events)

    async def events(
        self,
        *,
        org_id: str | None,
        operators_too: bool = True,
        types: Sequence[EventType] = (),
        after: int | None = None,
        limit: int = 50,
        uow: UnitOfWork | None = None,
    ) -> list[tuple[int, Event]]:
        """Events newest first, each with its number in the log: about the org (or every
        org), the operators' too unless told not (an org's own reader never sees them), of
        some types, numbered below `after` (the last of the previous page)."""
        async with self._tx.read(uow) as unit:
            return await EventRepository(unit).events(
                org_id=org_id, operators_too=operators_too, types=types, after=after, limit=limit
            )
