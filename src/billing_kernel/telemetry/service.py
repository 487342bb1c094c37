"""The figures a scrape of `/metrics` reads from the database, besides what the processes
counted themselves: how much the outbox holds, how long its oldest has waited, and how many
months of the orgs are due to close and have no invoice yet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.invoices.rules import closes_at
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
    def __init__(
        self, transactions: Transactions, clock: Callable[[], datetime], grace: timedelta
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._grace = grace
        """BILLING_LATE_EVENT_GRACE_HOURS: how long after its end a month closes."""

    async def outbox(self, uow: UnitOfWork | None = None) -> Outbox:
        async with self._tx.read(uow) as unit:
            repository = TelemetryRepository(unit)
            undispatched, oldest_event = await repository.undispatched_events()
            pending, oldest_delivery = await repository.pending_deliveries()
        now = self._clock()

        def age(oldest: datetime | None) -> float:
            return 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())

        return Outbox(undispatched, age(oldest_event), pending, age(oldest_delivery))

    async def months_awaiting_close(self, uow: UnitOfWork | None = None) -> int:
        """How many months of the orgs have closed (their grace passed) and have no invoice:
        for each org, every month from its first subscription to the last one closed, less
        the invoices (not void) of those months. It stays above 0 between a month's close
        and the closer's next round; longer, the closer is not running or is failing."""
        last = BillingPeriod.containing(self._clock())
        while closes_at(last, self._grace) > self._clock():
            last = last.previous()
        async with self._tx.read(uow) as unit:
            repository = TelemetryRepository(unit)
            firsts = await repository.orgs_by_first_month()
            invoiced = await repository.live_invoices_through(last.key)
        end = last.start.year * 12 + last.start.month
        months = ((year * 12 + month, n) for year, month, n in firsts)
        due = sum(n * (end - first + 1) for first, n in months if first <= end)
        return max(0, due - invoiced)

    async def lines_in_default(self, uow: UnitOfWork | None = None) -> bool:
        """Whether usage lines landed outside their month's partition (PostgreSQL): the
        worker's upkeep did not make it ahead, and will not until they are moved out."""
        async with self._tx.read(uow) as unit:
            return await TelemetryRepository(unit).lines_in_default()
