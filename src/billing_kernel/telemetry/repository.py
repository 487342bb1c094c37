"""What the operators' metrics read at each scrape: the outbox of billing events and their
deliveries (two indexed aggregates), and the months of each org that are due to close
(two aggregates: orgs by the month they were first subscribed, and live invoices)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ColumnElement, extract, func, select, text

from billing_kernel.db.tables import billing_events, deliveries, invoices, subscription_history
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

    async def orgs_by_first_month(self) -> list[tuple[int, int, int]]:
        """(year, month, how many orgs): the UTC month of each org's first subscription."""
        h = subscription_history.c
        firsts = select(func.min(h.valid_from).label("first")).group_by(h.org_id).subquery()
        first: ColumnElement[datetime] = firsts.c.first
        if self._conn.dialect.name == "postgresql":  # the month in UTC, whatever the session's
            first = func.timezone("UTC", first)
        year, month = extract("year", first), extract("month", first)
        rows = await self._conn.execute(select(year, month, func.count()).group_by(year, month))
        return [(int(y), int(m), int(n)) for y, m, n in rows]

    async def live_invoices_through(self, period_start: date) -> int:
        """Invoices not void for a period that starts no later than `period_start`."""
        i = invoices.c
        query = select(func.count()).where(i.status != "void", i.period_start <= period_start)
        return int((await self._conn.execute(query)).scalar_one())

    async def lines_in_default(self) -> bool:
        """Whether usage lines or events landed in their DEFAULT partition (PostgreSQL): a
        month that had no partition of its own when they were written."""
        if self._conn.dialect.name != "postgresql":
            return False
        for table in ("usage_lines_default", "usage_events_default"):
            there = await self._conn.execute(text("SELECT to_regclass(:t)"), {"t": table})
            if there.scalar() is None:
                continue
            found = await self._conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {table})"))
            if found.scalar():
                return True
        return False
