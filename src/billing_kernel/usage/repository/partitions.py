"""The months of `usage_lines` (migration 0039) and `usage_events` (0047) on PostgreSQL: a
partition a month for each, made ahead of its month by the worker. Partition DDL is the only
DDL the kernel runs outside its migrations."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from billing_kernel.db.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

LOCK_WAIT = "2s"
"""How long making a partition may wait for the parent's lock (it waits behind every
transaction that reads or writes the table); given up, it is tried again at the next round."""

_COVERED = "42P17"  # invalid_object_definition: an existing partition already holds the range
_MADE = "42P07"  # duplicate_table: another worker made it meanwhile
_IN_DEFAULT = "23514"  # check_violation: the DEFAULT partition already holds rows of the month

BY_MONTH = {"usage_lines": "'{}'", "usage_events": "'{} 00:00:00+00'"}
"""The tables partitioned by month, each with how a month's first day is written as a bound
of its partition key: lines by `period_start` (a date), events by `occurred_at` (UTC)."""


def partition_name(table: str, month: date) -> str:
    return f"{table}_{month:%Y_%m}"


def _next_month(month: date) -> date:
    return date(month.year + 1, 1, 1) if month.month == 12 else date(month.year, month.month + 1, 1)


class MonthPartitions:
    """The months of one of the tables in BY_MONTH."""

    def __init__(self, uow: UnitOfWork, table: str) -> None:
        if table not in BY_MONTH:
            raise ValueError(f"{table} is not partitioned by month")
        self._conn = uow.connection
        self.table = table

    def name(self, month: date) -> str:
        return partition_name(self.table, month)

    async def partitioned(self) -> bool:
        """Whether the table is partitioned here (PostgreSQL, migrated past its migration)."""
        if self._conn.dialect.name != "postgresql":
            return False
        found = await self._conn.execute(
            text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(:table)"),
            {"table": self.table},
        )
        return bool(found.scalar())

    async def make(self, month: date) -> bool:
        """Make `month`'s partition unless the month has one (its own, or the first
        partition's range); whether it made it. When the DEFAULT partition already holds
        lines of the month, or the lock is not had in LOCK_WAIT, it is logged and left for
        the next round."""
        if await self.has_own(month):
            return False
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                await self._conn.execute(
                    text(
                        f"CREATE TABLE {self.name(month)} PARTITION OF {self.table} "
                        f"FOR VALUES FROM ({self._bound(month)}) "
                        f"TO ({self._bound(_next_month(month))})"
                    )
                )
        except DBAPIError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if state in (_COVERED, _MADE):
                return False
            if state == _IN_DEFAULT:
                logger.warning(
                    "%s of %s are in the DEFAULT partition: %s stays unmade "
                    "(move them out to make it)",
                    self.table,
                    month.isoformat(),
                    self.name(month),
                )
                return False
            if state == "55P03":  # lock_not_available
                logger.info("making %s waited too long for its lock; later", self.name(month))
                return False
            raise
        return True

    async def has_own(self, month: date) -> bool:
        """Whether `month` has a partition of its own (not the first one's range, not
        DEFAULT)."""
        exists = await self._conn.execute(
            text("SELECT to_regclass(:name) IS NOT NULL"), {"name": self.name(month)}
        )
        return bool(exists.scalar())

    async def drop(self, month: date) -> bool:
        """Drop `month`'s own partition, its rows and all; whether the month has none left
        (False: the lock was not had in LOCK_WAIT; tried again at the next round). Only for
        a month whose events are forgotten (`retention.py`)."""
        if not await self.has_own(month):
            return True
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                await self._conn.execute(text(f"DROP TABLE IF EXISTS {self.name(month)}"))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                logger.info("dropping %s waited too long for its lock; later", self.name(month))
                return False
            raise
        return True

    def _bound(self, month: date) -> str:
        return BY_MONTH[self.table].format(month.isoformat())
