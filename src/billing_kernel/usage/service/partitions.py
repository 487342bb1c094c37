"""Making the months of usage lines ahead (PostgreSQL): see `repository/partitions.py`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions
from billing_kernel.usage.repository.partitions import LinePartitions

AHEAD = 2
"""Months made ahead of the current one."""


class PartitionService:
    def __init__(self, transactions: Transactions, clock: Callable[[], datetime]) -> None:
        self._tx = transactions
        self._clock = clock

    async def make_ahead(self, months: int = AHEAD) -> list[str]:
        """Make the partitions of the current month and the `months` after it that are
        missing, each in a transaction of its own; the names of those made (none on SQLite,
        where lines are one table)."""
        made: list[str] = []
        period = BillingPeriod.containing(self._clock())
        for _ in range(months + 1):
            async with self._tx.begin() as unit:
                partitions = LinePartitions(unit)
                if not await partitions.partitioned():
                    return made
                if await partitions.make(period.key):
                    made.append(f"usage_lines_{period.key:%Y_%m}")
            period = period.next()
        return made
