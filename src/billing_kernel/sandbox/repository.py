"""The sandbox clock's offset, as stored (one row at most)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import sandbox_clock
from billing_kernel.db.unit_of_work import UnitOfWork

MICROSECOND = timedelta(microseconds=1)


class SandboxRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def offset(self) -> timedelta:
        """How far the clock stands past real time (zero: not moved)."""
        stored = (
            await self._conn.execute(select(sandbox_clock.c.offset_microseconds))
        ).scalar_one_or_none()
        return timedelta(0) if stored is None else stored * MICROSECOND

    async def hold(self, now: datetime) -> timedelta:
        """`offset`, with the row (made if missing) held until the transaction ends, so
        that two moves at once run one after the other."""
        await self._conn.execute(
            upsert(self._conn, sandbox_clock)
            .values(id=1, offset_microseconds=0, moved_at=now)
            .on_conflict_do_nothing(index_elements=[sandbox_clock.c.id])
        )
        stmt = select(sandbox_clock.c.offset_microseconds)
        if self._conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        stored = (await self._conn.execute(stmt)).scalar_one_or_none()
        return timedelta(0) if stored is None else stored * MICROSECOND

    async def set_offset(self, offset: timedelta, moved_at: datetime) -> None:
        stmt = upsert(self._conn, sandbox_clock).values(
            id=1, offset_microseconds=offset // MICROSECOND, moved_at=moved_at
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[sandbox_clock.c.id],
                set_={
                    "offset_microseconds": stmt.excluded.offset_microseconds,
                    "moved_at": stmt.excluded.moved_at,
                },
            )
        )
