"""Reservations as stored, and the holds whose time has ended."""

from __future__ import annotations

import functools
from datetime import date, datetime
from typing import Any

from sqlalchemy import Insert, Update, bindparam, select, update

from billing_kernel.db.database import upsert_for
from billing_kernel.db.tables import usage_reservations
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.reservations.rules import Reservation, ReservationStatus

_r = usage_reservations.c


@functools.cache
def _insert(dialect_name: str) -> Insert:
    """Built once per dialect: it runs with every reservation."""
    stmt: Insert = (
        upsert_for(dialect_name, usage_reservations)
        .on_conflict_do_nothing(index_elements=[_r.org_id, _r.idempotency_key])
        .returning(_r.reservation_id)
    )
    return stmt


def _expire_due() -> Update:
    """The org's holds of one metric whose TTL has ended, marked expired, answering what
    each held where. On PostgreSQL a hold another transaction is settling (or expiring) at
    this moment is skipped, not waited for: that transaction gives its units back."""
    held = ReservationStatus.HELD.value
    due = (
        select(_r.reservation_id)
        .where(
            _r.org_id == bindparam("for_org"),
            _r.metric == bindparam("for_metric"),
            _r.status == held,
            _r.expires_at <= bindparam("due_by", type_=_r.expires_at.type),
        )
        .with_for_update(skip_locked=True)
    )
    return (
        update(usage_reservations)
        .where(_r.reservation_id.in_(due.scalar_subquery()), _r.status == held)
        .values(status=ReservationStatus.EXPIRED.value, settled_at=bindparam("due_by"))
        .returning(_r.period_start, _r.estimate)
    )


_EXPIRE_DUE = _expire_due()


class ReservationRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def insert(self, reservation: Reservation) -> bool:
        """Store a new reservation; False (and nothing written) when the org already has one
        under its idempotency key."""
        r = reservation
        result = await self._conn.execute(
            _insert(self._conn.dialect.name),
            {
                "reservation_id": r.reservation_id,
                "org_id": r.org_id,
                "idempotency_key": r.idempotency_key,
                "metric": r.metric,
                "period_start": r.period_start,
                "estimate": r.estimate,
                "status": r.status.value,
                "reserved_at": r.reserved_at,
                "expires_at": r.expires_at,
                "committed_quantity": r.committed_quantity,
                "settled_at": r.settled_at,
            },
        )
        return result.first() is not None

    async def get(
        self, reservation_id: str, *, org_id: str | None = None, for_update: bool = False
    ) -> Reservation | None:
        """The reservation (of `org_id`, if given); locked until the transaction ends with
        `for_update` (on PostgreSQL; SQLite's write transactions hold the whole file)."""
        query = select(usage_reservations).where(_r.reservation_id == reservation_id)
        if org_id is not None:
            query = query.where(_r.org_id == org_id)
        if for_update:
            query = query.with_for_update()
        found = (await self._conn.execute(query)).first()
        return None if found is None else _reservation(found)

    async def by_key(self, org_id: str, idempotency_key: str) -> Reservation | None:
        found = (
            await self._conn.execute(
                select(usage_reservations).where(
                    _r.org_id == org_id, _r.idempotency_key == idempotency_key
                )
            )
        ).first()
        return None if found is None else _reservation(found)

    async def settle(
        self,
        reservation_id: str,
        status: ReservationStatus,
        committed_quantity: int | None,
        settled_at: datetime,
    ) -> None:
        await self._conn.execute(
            update(usage_reservations)
            .where(_r.reservation_id == reservation_id)
            .values(
                status=status.value, committed_quantity=committed_quantity, settled_at=settled_at
            )
        )

    async def expire_due(self, org_id: str, metric: str, now: datetime) -> dict[date, int]:
        """Mark the org's holds of `metric` whose TTL ended by `now` expired; returns the
        units they held, by period."""
        result = await self._conn.execute(
            _EXPIRE_DUE, {"for_org": org_id, "for_metric": metric, "due_by": now}
        )
        released: dict[date, int] = {}
        for period_start, estimate in result:
            released[period_start] = released.get(period_start, 0) + estimate
        return released


def _reservation(row: Any) -> Reservation:
    return Reservation(
        reservation_id=row.reservation_id,
        org_id=row.org_id,
        idempotency_key=row.idempotency_key,
        metric=row.metric,
        estimate=row.estimate,
        status=ReservationStatus(row.status),
        reserved_at=row.reserved_at,
        expires_at=row.expires_at,
        committed_quantity=row.committed_quantity,
        settled_at=row.settled_at,
    )
