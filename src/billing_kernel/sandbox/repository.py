"""The sandbox clock's offset, as stored (one row at most)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import sandbox_clock
from billing_kernel.db.unit_of_work import UnitOfWork

MICROSECOND = timedelta(microseconds=1)


class SandboxRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def offset(self) -> timedelta:
        """How far the clock stands past real time (zero: not moved, or no row)."""
        stored = (
            await self._conn.execute(select(sandbox_clock.c.offset_microseconds))
        ).scalar_one_or_none()
        return (stored or 0) * MICROSECOND

    async def hold(self, now: datetime) -> timedelta:
        """`offset`, with its row (made if missing) held until the transaction ends, so
        that two moves at once run one after the other (SQLite: one writer at a time)."""
        await self._conn.execute(
            upsert(self._conn, sandbox_clock)
            .values(id=1, offset_microseconds=0, moved_at=now)
            .on_conflict_do_nothing(index_elements=[sandbox_clock.c.id])
        )
        held = select(sandbox_clock.c.offset_microseconds)
        if self._conn.dialect.name == "postgresql":
            held = held.with_for_update()
        return int((await self._conn.execute(held)).scalar_one()) * MICROSECOND

    async def set_offset(self, offset: timedelta, moved_at: datetime) -> None:
        """Move the held row (`hold` first)."""
        await self._conn.execute(
            update(sandbox_clock).values(
                offset_microseconds=offset // MICROSECOND, moved_at=moved_at
            )
        )
