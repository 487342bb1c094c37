"""Making the months of usage events and lines ahead (PostgreSQL): see
`repository/partitions.py`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions
from billing_kernel.usage.repository.partitions import BY_MONTH, MonthPartitions

AHEAD = 2
"""Months made ahead of the current one."""


class PartitionService:
    def __init__(self, transactions: Transactions, clock: Callable[[], datetime]) -> None:
        self._tx = transactions
        self._clock = clock

    async def make_ahead(self, months: int = AHEAD) -> list[str]:
        """Make the partitions of the current month and the `months` after it that are
        missing, of each table partitioned by month, each in a transaction of its own; the
        names of those made (none on SQLite, where each is one table)."""
        made: list[str] = []
        for table in sorted(BY_MONTH):
            period = BillingPeriod.containing(self._clock())
            for _ in range(months + 1):
                async with self._tx.begin() as unit:
                    partitions = MonthPartitions(unit, table)
                    if not await partitions.partitioned():
                        break
                    if await partitions.make(period.key):
                        made.append(partitions.name(period.key))
                period = period.next()
        return made
