"""Holding units for work in progress, and settling the holds.

Whether a reservation may be made is a quota decision: `QuotaService.reserve` decides it
and calls `hold` here in the same transaction. Every write to a hold, here, locks the
reservation's row before its counter's, so holds are settled exactly once however commits,
releases and expiries race."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from billing_kernel.common.keys import CounterKey
from billing_kernel.common.validation import validate_quantity
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import IdempotencyConflict, ReservationNotFound
from billing_kernel.reservations.repository import ReservationRepository
from billing_kernel.reservations.rules import (
    Reservation,
    ReservationStatus,
    Settlement,
    commit_of,
    new_reservation_id,
    release_of,
)
from billing_kernel.usage.rules import CeilingWrite
from billing_kernel.usage.service import UsageService


@dataclass(frozen=True, slots=True)
class Hold:
    """A new reservation, and the counter as its conditional hold judged it."""

    reservation: Reservation
    write: CeilingWrite


class ReservationService:
    def __init__(
        self, transactions: Transactions, clock: Callable[[], datetime], usage: UsageService
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._usage = usage

    async def hold(
        self,
        org_id: str,
        metric: str,
        estimate: int,
        *,
        idempotency_key: str,
        ttl: timedelta,
        most: int | None,
        now: datetime,
        uow: UnitOfWork,
    ) -> Hold:
        """Make a reservation of `estimate` units, held only if the counter's usage and holds
        stay at most `most` (else kept as refused). A key the org already used, for a
        reservation or a usage event, raises IdempotencyConflict (in `uow`, which the
        caller rolls back): the reservation's commit records its usage under that key."""
        reservation = _new(org_id, metric, estimate, idempotency_key, ttl, now)
        reservations = ReservationRepository(uow)
        # The row first, as a consume's event: a used key stops here, before the counter's
        # row is locked.
        await self._insert(reservation, uow)
        key = CounterKey(org_id, reservation.period_start, metric)
        write = await self._usage.hold_within(key, estimate, most=most, now=now, uow=uow)
        if not write.recorded:
            reservation = _settled(reservation, ReservationStatus.REFUSED, None, now)
            await reservations.settle(reservation.reservation_id, reservation.status, None, now)
        return Hold(reservation, write)

    async def refuse(
        self,
        org_id: str,
        metric: str,
        estimate: int,
        *,
        idempotency_key: str,
        ttl: timedelta,
        now: datetime,
        uow: UnitOfWork,
    ) -> Reservation:
        """Keep a reservation refused before anything could be held (the org's billing
        status refuses every metered operation), so that a retry finds it as any refused
        one. A used key raises IdempotencyConflict, as `hold` does."""
        made = _new(org_id, metric, estimate, idempotency_key, ttl, now)
        reservation = _settled(made, ReservationStatus.REFUSED, None, now)
        await self._insert(reservation, uow)
        return reservation

    async def _insert(self, reservation: Reservation, uow: UnitOfWork) -> None:
        """Store a new reservation; IdempotencyConflict when its org already used its key,
        for a reservation or a usage event (its commit records usage under the key)."""
        org_id, key = reservation.org_id, reservation.idempotency_key
        taken = not await ReservationRepository(uow).insert(reservation)
        if taken or await self._usage.has_event(org_id, key, uow):
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used for org {org_id!r}",
                org_id=org_id,
                idempotency_key=key,
            )

    async def expire_due(self, org_id: str, metric: str, now: datetime, uow: UnitOfWork) -> None:
        """Give back the org's holds of `metric` whose TTL has ended by `now`."""
        released = await ReservationRepository(uow).expire_due(org_id, metric, now)
        await self._usage.release_holds(
            {CounterKey(org_id, period, metric): units for period, units in released.items()},
            now,
            uow,
        )

    async def get(
        self, reservation_id: str, *, org_id: str | None = None, uow: UnitOfWork | None = None
    ) -> Reservation:
        """The reservation (restricted to `org_id`'s, if given), or ReservationNotFound."""
        async with self._tx.read(uow) as unit:
            return _found(
                await ReservationRepository(unit).get(reservation_id, org_id=org_id),
                reservation_id,
            )

    async def by_key(self, org_id: str, idempotency_key: str, uow: UnitOfWork) -> Reservation:
        """The org's reservation made under `idempotency_key` (it must exist)."""
        found = await ReservationRepository(uow).by_key(org_id, idempotency_key)
        assert found is not None, "a reserve decision is stored with its reservation"
        return found

    async def commit(
        self, reservation_id: str, actual: int, *, org_id: str | None = None
    ) -> Reservation:
        """Record `actual` units (more or fewer than the estimate; never refused) as the
        reservation's usage, under its idempotency key and in its period, and give back
        what it holds. Also after its TTL ended: the work happened. A retry with the same
        amount changes nothing; see `reservations.rules.commit_of` for the rest."""
        quantity = validate_quantity(actual)
        return await self._settle(
            reservation_id, org_id, lambda reservation: commit_of(reservation, quantity)
        )

    async def release(self, reservation_id: str, *, org_id: str | None = None) -> Reservation:
        """Give back what the reservation holds, recording no usage (see `release_of`)."""
        return await self._settle(reservation_id, org_id, release_of)

    async def _settle(
        self,
        reservation_id: str,
        org_id: str | None,
        settlement_of: Callable[[Reservation], Settlement],
    ) -> Reservation:
        async with self._tx.begin() as unit:
            now = self._clock()
            reservations = ReservationRepository(unit)
            reservation = _found(
                await reservations.get(reservation_id, org_id=org_id, for_update=True),
                reservation_id,
            )
            settlement = settlement_of(reservation)
            if not settlement.changes:
                return reservation
            key = CounterKey(reservation.org_id, reservation.period_start, reservation.metric)
            if settlement.record is not None:
                await self._usage.record_held(
                    reservation.org_id,
                    reservation.metric,
                    settlement.record,
                    idempotency_key=reservation.idempotency_key,
                    occurred_at=reservation.reserved_at,
                    released=settlement.release,
                    now=now,
                    uow=unit,
                )
            elif settlement.release:
                await self._usage.release_holds({key: settlement.release}, now, unit)
            settled = _settled(reservation, settlement.status, settlement.record, now)
            await reservations.settle(
                reservation_id, settled.status, settled.committed_quantity, now
            )
            return settled


def _found(reservation: Reservation | None, reservation_id: str) -> Reservation:
    if reservation is None:
        raise ReservationNotFound(
            f"no reservation {reservation_id!r}", reservation_id=reservation_id
        )
    return reservation


def _new(
    org_id: str, metric: str, estimate: int, key: str, ttl: timedelta, now: datetime
) -> Reservation:
    """A reservation made `now`, holding until `ttl` has passed."""
    return Reservation(
        reservation_id=new_reservation_id(),
        org_id=org_id,
        idempotency_key=key,
        metric=metric,
        estimate=estimate,
        status=ReservationStatus.HELD,
        reserved_at=now,
        expires_at=now + ttl,
    )


def _settled(
    reservation: Reservation, status: ReservationStatus, committed: int | None, now: datetime
) -> Reservation:
    return replace(reservation, status=status, committed_quantity=committed, settled_at=now)
