"""The unit of work: one transaction that several services write through.

A service method takes `uow: UnitOfWork | None = None`. Given one, it joins it: its writes
commit or roll back with everything else in that unit. Without one, it opens its own and
commits when it returns. So only the edge (a request, a CLI command, a job) decides where a
transaction starts and ends:

    async with kernel.transaction() as uow:
        await kernel.usage.record_batch(events, uow=uow)
        await kernel.subscriptions.set_plan(org_id, "pro", uow=uow)   # both, or neither
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection

from billing_kernel.db.database import Database


class ReadOnlyUnit(RuntimeError):
    """A write was asked of a unit of work for reads only (one that may be on the read
    replica): the caller reads again in a transaction on the primary."""


class UnitOfWork:
    """One open transaction (or, from `Transactions.read`, a connection for reads only).
    Repositories are built on it; services pass it on to each other."""

    __slots__ = ("connection", "writable")

    def __init__(self, connection: AsyncConnection, *, writable: bool = True) -> None:
        self.connection = connection
        self.writable = writable


class Transactions:
    """Where a service's work runs: the caller's unit of work, or a new one on `database`,
    confined to `acting_user`'s orgs by row-level security when it is set (PostgreSQL);
    with `reads_may_lag`, reads may be served by the database's read replica."""

    __slots__ = ("acting_user", "database", "reads_may_lag")

    def __init__(
        self, database: Database, *, acting_user: str | None = None, reads_may_lag: bool = False
    ) -> None:
        self.database = database
        self.acting_user = acting_user
        self.reads_may_lag = reads_may_lag

    @asynccontextmanager
    async def begin(self, uow: UnitOfWork | None = None) -> AsyncIterator[UnitOfWork]:
        """Join `uow`, or run in a new transaction: committed when the block ends, rolled back
        if it raises (see `Database.transaction`)."""
        if uow is not None:
            if not uow.writable:
                raise ReadOnlyUnit("a write was asked of a read-only unit of work")
            yield uow
            return
        async with self.database.transaction(acting_user=self.acting_user) as conn:
            yield UnitOfWork(conn)

    async def in_batches(self, step: Callable[[UnitOfWork], Awaitable[int]], batch: int) -> int:
        """Run `step` in a new transaction each time, until it does fewer than `batch` rows
        (never one long transaction, however many are due); how many it did in all."""
        done = 0
        while True:
            async with self.begin() as unit:
                did = await step(unit)
            done += did
            if did < batch:
                return done

    @asynccontextmanager
    async def join(self, uow: UnitOfWork | None = None) -> AsyncIterator[UnitOfWork]:
        """Join `uow`, for reads or writes, or run in a new transaction: for reads that may
        have to write first (a state seeded on first use), which a read-only unit refuses
        with ReadOnlyUnit."""
        if uow is not None:
            yield uow
            return
        async with self.begin() as unit:
            yield unit

    @asynccontextmanager
    async def read(self, uow: UnitOfWork | None = None) -> AsyncIterator[UnitOfWork]:
        """Join `uow`, or read on a connection of its own that must not write (see
        `Database.read`: autocommit on PostgreSQL for the kernel's own role; on the replica
        with `reads_may_lag`)."""
        if uow is not None:
            yield uow
            return
        async with self.database.read(
            acting_user=self.acting_user, may_lag=self.reads_may_lag
        ) as conn:
            yield UnitOfWork(conn, writable=False)
