"""Usage read back: an org's events in the order they occurred (a page at a time, or all of
them for an export), its counters, and its usage per month, day and property value, as the
summary, the billing page, the events routes and the protocols' reads show them. Nothing
here writes; recording is `recording.py`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import date, datetime

from billing_kernel.common.periods import BillingPeriod, ensure_utc
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.metrics.rules import Aggregation, Metric, seats_in_month, used_and_peak
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.usage.repository import UsageHistory
from billing_kernel.usage.repository.retention import UsageRetention
from billing_kernel.usage.rules import EventPosition, StoredEvent

EXPORT_PAGE = 5_000
"""Events read per transaction by an export."""


class UsageReader:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        metrics: MetricService,
        orgs: OrgService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._metrics = metrics
        self._orgs = orgs

    async def forgotten_months(self, uow: UnitOfWork | None = None) -> set[date]:
        """The months whose events and lines are forgotten, or being forgotten, past
        BILLING_EVENT_RETENTION_MONTHS (`retention.py`): their usage stands in counters and
        in what invoices recorded, no longer in lines."""
        async with self._tx.read(uow) as unit:
            return await UsageRetention(unit).forgotten_months()

    async def last_seats_month(
        self, org_id: str, metric: str, uow: UnitOfWork | None = None
    ) -> date | None:
        """The first day of the latest month with a recorded seat peak of `metric`."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).last_period_with(org_id, metric)

    async def value_totals(
        self,
        org_id: str,
        period_start: date,
        metric: str,
        prop: str,
        values: Sequence[str],
        *,
        invoice_id: str | None = None,
        unbilled: bool = False,
        uow: UnitOfWork | None = None,
    ) -> dict[str, int]:
        """The org's usage of `metric` in a period whose events' property `prop` has one of
        `values`, per value (of the lines `invoice_id` billed, or of those none billed yet:
        `unbilled`)."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).value_totals(
                org_id,
                period_start,
                metric,
                prop,
                values,
                invoice_id=invoice_id,
                unbilled=unbilled,
            )

    async def seat_peaks(
        self, org_id: str, period: BillingPeriod, members_now: int, uow: UnitOfWork | None = None
    ) -> dict[str, int]:
        """Each seats metric's peak in `period` (the current one: so far, with `members_now`
        the live member count), as an invoice bills it and the summary shows it."""
        async with self._tx.read(uow) as unit:
            catalogue = await self._metrics.catalogue(unit)
            seats = [m for m in catalogue if m.aggregation is Aggregation.SEATS]
            if not seats:
                return {}
            counters = await self.counters(org_id, period, unit)
            if period == BillingPeriod.containing(self._clock()):
                return {
                    m.key: used_and_peak(m, counters.get(m.key, 0), members_now)[1] or 0
                    for m in seats
                }
            by_month = {(period.key, m.key): counters[m.key] for m in seats if m.key in counters}
            peaks = await self.seat_peaks_by_month(
                org_id, by_month, [period.key], seats, members_now, unit
            )
            return {m.key: peaks[period.key, m.key] for m in seats}

    async def seat_peaks_by_month(
        self,
        org_id: str,
        counters: Mapping[tuple[date, str], int],
        months: Sequence[date],
        catalogue: Sequence[Metric],
        members_now: int,
        uow: UnitOfWork,
    ) -> dict[tuple[date, str], int]:
        """`counters` (by month and metric) with each seats metric's peak in each of
        `months`, recorded or not (see `seats_in_month`); `members_now`: the live count."""
        peaks = dict(counters)
        seats_metrics = [m for m in catalogue if m.aggregation is Aggregation.SEATS]
        if not seats_metrics or not months:
            return peaks
        current = BillingPeriod.containing(self._clock()).key
        for metric in seats_metrics:
            last = await self.last_seats_month(org_id, metric.key, uow)
            for month in months:
                peaks[(month, metric.key)] = seats_in_month(
                    counters.get((month, metric.key)),
                    month,
                    current=current,
                    last_recorded=last,
                    members_now=members_now,
                )
        return peaks

    async def events(
        self,
        org_id: str,
        *,
        metric: str | None = None,
        event: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: EventPosition | None = None,
        limit: int = 50,
        offset: int = 0,
        through: EventPosition | None = None,
        uow: UnitOfWork | None = None,
    ) -> list[StoredEvent]:
        """Up to `limit` of the org's usage events in the order they occurred (then by key,
        each once per metric it counts toward), after the position `after` (an event's
        `position`) and `offset` more, up to the position `through` (included): of one
        metric or all, of one event name or all, that occurred from
        `start` (included) until `end` (not). OrgNotFound for an unknown org, UnknownMetric
        for a metric not in the catalogue."""
        async with self._tx.read(uow) as unit:
            await self._orgs.require(org_id, unit)
            if metric is not None:
                await self._metrics.get(metric, unit)
            return await UsageHistory(unit).events(
                org_id,
                metric=metric,
                event=event,
                start=None if start is None else ensure_utc(start),
                end=None if end is None else ensure_utc(end),
                after=after,
                limit=limit,
                offset=offset,
                through=through,
            )

    async def all_events(
        self,
        org_id: str,
        *,
        metric: str | None = None,
        event: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: EventPosition | None = None,
        through: EventPosition | None = None,
        page: int = EXPORT_PAGE,
    ) -> AsyncIterator[list[StoredEvent]]:
        """Every event `events` selects after `after` and up to `through`, a page at a time,
        each page read in a transaction of its own: an export of millions of events holds
        one page in memory."""
        while True:
            found = await self.events(
                org_id,
                metric=metric,
                event=event,
                start=start,
                end=end,
                after=after,
                through=through,
                limit=page,
            )
            if found:
                yield found
            if len(found) < page:
                return
            after = found[-1].position

    async def counters(
        self, org_id: str, period: BillingPeriod, uow: UnitOfWork | None = None
    ) -> dict[str, int]:
        """The org's counters for one period, by metric (for seats: the period's peak)."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).counters_for_period(org_id, period.key)

    async def grouped_totals(
        self,
        org_id: str,
        first: BillingPeriod,
        end: BillingPeriod,
        prop: str,
        *,
        by_day: bool,
        uow: UnitOfWork | None = None,
    ) -> dict[tuple[date, str], dict[str | None, int]]:
        """The org's usage from the month `first` until the month `end` (not included), per
        month or day and metric, split by the value of the property `prop`."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).grouped_totals(
                org_id,
                first.key,
                end.key,
                prop,
                by_day=by_day,
                aggregations=await self._aggregations(unit),
            )

    async def event_counts(
        self, org_id: str, period: BillingPeriod, uow: UnitOfWork | None = None
    ) -> dict[str, int]:
        """How many events the org sent per metric in one period."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).event_counts(org_id, period.key)

    async def value_events(
        self,
        org_id: str,
        period: BillingPeriod,
        metric: str,
        prop: str,
        values: Sequence[str],
        uow: UnitOfWork | None = None,
    ) -> dict[str, int]:
        """How many events of `metric` the org sent in one period with each of `values` as
        their property `prop`."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).value_events(org_id, period.key, metric, prop, values)

    async def daily_totals(
        self, org_id: str, period: BillingPeriod, uow: UnitOfWork | None = None
    ) -> dict[tuple[date, str], int]:
        """The org's accepted usage in one period, per UTC day and metric: summed, or for
        a max or a latest, the day's highest or last."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).daily_totals(
                org_id, period.key, await self._aggregations(unit)
            )

    async def _aggregations(self, unit: UnitOfWork) -> dict[str, Aggregation]:
        """How the metrics whose usage is not the sum of their lines aggregate them."""
        catalogue = await self._metrics.by_key(unit)
        return {key: m.aggregation for key, m in catalogue.items() if not m.is_additive}

    async def counters_between(
        self,
        org_id: str,
        first: BillingPeriod,
        end: BillingPeriod,
        uow: UnitOfWork | None = None,
    ) -> dict[tuple[date, str], int]:
        """The org's counters for the periods from `first` up to, not including, `end`."""
        async with self._tx.read(uow) as unit:
            return await UsageHistory(unit).counters_between(org_id, first.key, end.key)
