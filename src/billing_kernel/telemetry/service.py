"""The figures a scrape of `/metrics` reads from the database, besides what the processes
counted themselves: how much the outbox holds, and how long its oldest has waited."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.telemetry.repository import TelemetryRepository


@dataclass(frozen=True, slots=True)
class Outbox:
    """Billing events not yet dispatched and deliveries not yet made: their numbers, and how
    long the oldest of each has waited (0 when none waits)."""

    undispatched: int
    undispatched_age_seconds: float
    pending: int
    pending_age_seconds: float


class TelemetryService:
    def __init__(self, transactions: Transactions, clock: Callable[[], datetime]) -> None:
        self._tx = transactions
        self._clock = clock

    async def outbox(self, uow: UnitOfWork | None = None) -> Outbox:
        async with self._tx.read(uow) as unit:
            repository = TelemetryRepository(unit)
            undispatched, oldest_event = await repository.undispatched_events()
            pending, oldest_delivery = await repository.pending_deliveries()
        now = self._clock()

        def age(oldest: datetime | None) -> float:
            return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())

        return Outbox(undispatched, age(oldest_event), pending, age(oldest_delivery))
