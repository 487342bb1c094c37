"""What the operators' metrics read at each scrape: the outbox of billing events and their
deliveries (two indexed aggregates)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from billing_kernel.db.tables import billing_events, deliveries
from billing_kernel.db.unit_of_work import UnitOfWork


class TelemetryRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def undispatched_events(self) -> tuple[int, datetime | None]:
        """Billing events not yet turned into deliveries: how many, and the oldest's time."""
        e = billing_events.c
        row = (
            await self._conn.execute(
                select(func.count(), func.min(e.created_at)).where(e.dispatched_at.is_(None))
            )
        ).one()
        return int(row[0]), row[1]

    async def pending_deliveries(self) -> tuple[int, datetime | None]:
        """Deliveries waiting for an attempt: how many, and the oldest's time."""
        d = deliveries.c
        row = (
            await self._conn.execute(
                select(func.count(), func.min(d.created_at)).where(d.status == "pending")
            )
        ).one()
        return int(row[0]), row[1]
