"""Forgetting events past BILLING_EVENT_RETENTION_MONTHS (`forget_due`, run by the worker's
upkeep): a month's events, their lines and the values its unique counts saw go, once every
line of the month is billed by an invoice and the month is past `kept_until`. What is kept:
counters (the summary's months), invoices with their lines and the usage each recorded
(`invoices verify` rests on that for a forgotten month), and everything of later months.

A month is recorded as begun before anything of it is deleted, and as finished once all
is; each batch is a transaction of its own, so a worker stopped half way leaves a month
begun, which the next round finishes. On PostgreSQL a month with partitions of its own
loses its events and lines by dropping them, and its events' keys in batches; otherwise
(SQLite, the months in the first partitions of migrations 0039 and 0047) all of it goes in
batches."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.metrics.rules import Position
from billing_kernel.orgs.service import OrgService
from billing_kernel.usage.repository.partitions import MonthPartitions
from billing_kernel.usage.repository.retention import UsageRetention
from billing_kernel.usage.rules import kept_until

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Review:
    forgotten: tuple[date, ...]
    """Begun to be forgotten (a round stopped half way finishes it)."""
    due: tuple[date, ...]
    waiting: tuple[date, ...]
    """Past their retention, with a line no invoice billed yet."""


BATCH = 2_000
"""Rows a transaction deletes at most."""


class RetentionService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        orgs: OrgService,
        *,
        months: int | None,
        max_event_age: timedelta,
        batch: int = BATCH,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._orgs = orgs
        self._months = months
        self._max_age = max_event_age
        self._batch = batch

    @property
    def months(self) -> int | None:
        """BILLING_EVENT_RETENTION_MONTHS (None: every event is kept)."""
        return self._months

    async def review(self) -> Review:
        """Where retention stands: the months forgotten (or being forgotten), those past their
        retention to forget now, and those past it that wait for an invoice (a line no
        invoice billed yet), oldest first; none due or waiting while
        BILLING_EVENT_RETENTION_MONTHS is unset."""
        now = self._clock()
        async with self._tx.read() as unit:
            repo = UsageRetention(unit)
            forgotten = tuple(sorted(await repo.forgotten_months()))
            if self._months is None:
                return Review(forgotten, due=(), waiting=())
            finished = await repo.finished_months()
            due: list[date] = []
            waiting: list[date] = []
            month = await repo.earliest_month()
            while month is not None and kept_until(month, self._months, self._max_age) <= now:
                if month not in finished:
                    (waiting if await repo.unbilled(month) else due).append(month)
                month = BillingPeriod.starting(month).next().key
            return Review(forgotten, due=tuple(due), waiting=tuple(waiting))

    async def due(self) -> list[date]:
        """The months past their retention not yet forgotten (`review`); those with a line no
        invoice billed yet wait for it, and are logged."""
        review = await self.review()
        for month in review.waiting:
            logger.info(
                "usage of %s is past its retention but not all billed: kept", f"{month:%Y-%m}"
            )
        return list(review.due)

    async def forget_due(self) -> list[date]:
        """Forget every month `due`, each in batches; the months forgotten."""
        done = []
        for month in await self.due():
            if await self.forget(month):
                done.append(month)
        return done

    async def forget(self, month: date) -> bool:
        """Forget `month`'s events, lines and unique values, org by org, `batch` rows a
        transaction; whether it finished (False: its partition's lock was not had: the next
        round finishes it)."""
        async with self._tx.begin() as unit:
            await UsageRetention(unit).begin(month, self._clock())
            orgs = await UsageRetention(unit).orgs_of(month)
            own = {
                table: await partitions.partitioned() and await partitions.has_own(month)
                for table in ("usage_lines", "usage_events")
                for partitions in [MonthPartitions(unit, table)]
            }
        for org_id in orgs:  # the events first: they are found through the lines
            await self._forget_org(
                org_id, month, lines=not own["usage_lines"], events=not own["usage_events"]
            )
        async with self._tx.begin() as unit:
            for table in ("usage_lines", "usage_events"):
                if own[table] and not await MonthPartitions(unit, table).drop(month):
                    return False
            await UsageRetention(unit).finish(month, self._clock())
        if orgs:
            logger.info("forgot the events of %s (%d org(s))", f"{month:%Y-%m}", len(orgs))
        return True

    async def _forget_org(self, org_id: str, month: date, *, lines: bool, events: bool) -> None:
        """Forget the org's share of `month`, each batch holding the org first (as a void
        does while it moves an invoice's events: the two run one after the other). The keys
        and repeats go in batches; the events and lines too unless (`events`, `lines`
        False) their month's partition is to be dropped whole."""
        after: Position | None = None
        while True:
            async with self._tx.begin() as unit:
                await self._orgs.lock(org_id, unit)
                read, after = await UsageRetention(unit).forget_counted_events(
                    org_id, month, after, self._batch, events=events
                )
            if read < self._batch:
                break
        b = self._batch
        steps: list[Callable[[UsageRetention], Awaitable[int]]] = [
            lambda repo: repo.forget_uncounted_events(org_id, month, b, events=events),
            lambda repo: repo.forget_unique_values(org_id, month, b),
        ]
        if lines:
            steps.append(lambda repo: repo.forget_lines(org_id, month, b))
        for work in steps:
            await self._tx.in_batches(self._holding(org_id, work), b)

    def _holding(
        self, org_id: str, work: Callable[[UsageRetention], Awaitable[int]]
    ) -> Callable[[UnitOfWork], Awaitable[int]]:
        """`work` as a batch that holds the org first."""

        async def step(unit: UnitOfWork) -> int:
            await self._orgs.lock(org_id, unit)
            return await work(UsageRetention(unit))

        return step
