"""The months of `usage_lines` on PostgreSQL: a partition a month (migration 0039), each made
ahead of its month by the worker. Partition DDL is the only DDL the kernel runs outside its
migrations."""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from billing_kernel.db.unit_of_work import UnitOfWork

logger = logging.getLogger(__name__)

LOCK_WAIT = "2s"
"""How long making a partition may wait for the parent's lock (it waits behind every
transaction that reads or writes lines); given up, it is tried again at the next round."""

_COVERED = "42P17"  # invalid_object_definition: an existing partition already holds the range
_MADE = "42P07"  # duplicate_table: another worker made it meanwhile
_IN_DEFAULT = "23514"  # check_violation: the DEFAULT partition already holds rows of the month


def partition_name(month: date) -> str:
    return f"usage_lines_{month:%Y_%m}"


def _next_month(month: date) -> date:
    return date(month.year + 1, 1, 1) if month.month == 12 else date(month.year, month.month + 1, 1)


class LinePartitions:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def partitioned(self) -> bool:
        """Whether `usage_lines` is partitioned here (PostgreSQL, migrated past 0039)."""
        if self._conn.dialect.name != "postgresql":
            return False
        found = await self._conn.execute(
            text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass('usage_lines')")
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
                        f"CREATE TABLE {partition_name(month)} PARTITION OF usage_lines "
                        f"FOR VALUES FROM ('{month.isoformat()}') "
                        f"TO ('{_next_month(month).isoformat()}')"
                    )
                )
        except DBAPIError as exc:
            state = getattr(exc.orig, "sqlstate", None)
            if state in (_COVERED, _MADE):
                return False
            if state == _IN_DEFAULT:
                logger.warning(
                    "usage lines of %s are in the DEFAULT partition: %s stays unmade "
                    "(move them out to make it)",
                    month.isoformat(),
                    partition_name(month),
                )
                return False
            if state == "55P03":  # lock_not_available
                logger.info("making %s waited too long for its lock; later", partition_name(month))
                return False
            raise
        return True

    async def has_own(self, month: date) -> bool:
        """Whether `month` has a partition of its own (not the first one's range, not
        DEFAULT)."""
        exists = await self._conn.execute(
            text("SELECT to_regclass(:name) IS NOT NULL"), {"name": partition_name(month)}
        )
        return bool(exists.scalar())

    async def drop(self, month: date) -> bool:
        """Drop `month`'s own partition, its lines and all; whether the month has none left
        (False: the lock was not had in LOCK_WAIT; tried again at the next round). Only for
        a month whose events are forgotten (`retention.py`)."""
        if not await self.has_own(month):
            return True
        try:
            async with self._conn.begin_nested():
                await self._conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
                await self._conn.execute(text(f"DROP TABLE IF EXISTS {partition_name(month)}"))
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
                logger.info(
                    "dropping %s waited too long for its lock; later", partition_name(month)
                )
                return False
            raise
        return True
