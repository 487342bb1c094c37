"""Recording usage: each event counted exactly once per idempotency key, by set-based SQL."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from billing_kernel.alerts.rules import Reading
from billing_kernel.alerts.service import AlertService
from billing_kernel.common.keys import CounterKey, MonthKey
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import (
    AmountOutOfBounds,
    BillingError,
    IdempotencyConflict,
)
from billing_kernel.metrics.rules import Aggregation, months_to_carry_seats
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.telemetry.instruments import EVENTS
from billing_kernel.usage.bounds import (
    Moved,
    beyond_bounds,
    month_total,
    months_to_price,
)
from billing_kernel.usage.coalescing import Coalescer
from billing_kernel.usage.repository import UsageHistory, UsageRepository, Written
from billing_kernel.usage.rules import (
    CeilingWrite,
    EventTimeWindow,
    Intake,
    RecordStatus,
    UsageBatchResult,
    UsageEvent,
    UsageOutcome,
    UsageRecordResult,
    UsageReport,
    UsageReportLike,
    counter_increments,
    counter_lasts,
    counter_peaks,
    new_usage_event,
    skip_counts,
)

logger = logging.getLogger(__name__)


TOGETHER_IN_FLIGHT = 2
"""Small requests' ingestion transactions a process runs at once; the small requests that
arrive meanwhile go in together (`usage/coalescing.py`). Fewer put more events in each
commit under load, more let a process overlap its transactions (docs/performance.md)."""
TOGETHER_MOST_SENT = 100
"""A request of more events than this goes alone, at once."""
TOGETHER_MOST_EVENTS = 1_000
"""The most events requests that go in together may have between them (a batch's most)."""


class UsageService:
    def __init__(
        self,
        transactions: Transactions,
        settings: Settings,
        clock: Callable[[], datetime],
        metrics: MetricService,
        orgs: OrgService,
        alerts: AlertService,
    ) -> None:
        self._tx = transactions
        self._alerts = alerts
        self._clock = clock
        self._metrics = metrics
        self._orgs = orgs
        self._window = EventTimeWindow(
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            max_age=timedelta(days=settings.max_event_age_days),
        )
        self.tracking_failures = 0
        """How many best-effort `update_counters` calls failed (and were swallowed)."""
        self._together = Coalescer(
            self.record_batch,
            in_flight=TOGETHER_IN_FLIGHT,
            most_sent=TOGETHER_MOST_SENT,
            most_events=TOGETHER_MOST_EVENTS,
        )

    async def record_request(self, reports: Sequence[UsageReportLike]) -> UsageBatchResult:
        """`record_batch` for one request's events in a transaction of their own: recorded at
        once, or, for a small request while the process already has TOGETHER_IN_FLIGHT
        transactions of small ones under way, with the small requests that arrive
        meanwhile, in one transaction (see `usage/coalescing.py`). Its answer is its own
        events' outcomes, as if it had gone alone after the requests before it."""
        if not self._together.takes(reports):
            return await self.record_batch(reports)
        return await self._together.record(reports)

    async def record(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        *,
        idempotency_key: str,
        occurred_at: datetime | None = None,
        properties: Mapping[str, object] | None = None,
        uow: UnitOfWork | None = None,
    ) -> UsageRecordResult:
        """Count `quantity` of `metric` for the org, exactly once per idempotency key.

        The event time (default: now) decides the period; `properties` are kept with the
        event (see `canonical_properties`). The same key with the same payload
        again is a no-op reported as DUPLICATE; with a different payload it raises
        IdempotencyConflict. Invalid input raises InvalidInput. Nothing is written on error.
        An org the kernel has not seen is created and seeded, unless BILLING_AUTO_CREATE_ORGS
        is false, in which case OrgNotFound is raised.
        """
        result = await self.record_batch(
            [UsageReport(org_id, metric, quantity, idempotency_key, occurred_at, properties)],
            uow=uow,
        )
        [outcome] = result.outcomes
        if outcome.error is not None:
            raise outcome.error
        assert outcome.event is not None
        return UsageRecordResult(
            status=outcome.status, event=outcome.event, created_org=outcome.created_org
        )

    async def note_changed_repeats(
        self, keys: Sequence[tuple[str, str]], *, uow: UnitOfWork
    ) -> None:
        """Note that each (org, key) was sent again with another payload and answered as a
        duplicate (an incumbent's protocol that counts it so): read back with its event."""
        times: dict[tuple[str, str], int] = {}
        for key in keys:
            times[key] = times.get(key, 0) + 1
        await UsageRepository(uow).note_repeats(times, self._clock())

    async def record_batch(
        self,
        reports: Sequence[UsageReportLike],
        *,
        uow: UnitOfWork | None = None,
        keep_uncounted: bool = False,
    ) -> UsageBatchResult:
        """Judge each event alone and count the valid ones, all in one transaction.

        Each outcome is ACCEPTED, DUPLICATE or REFUSED (with the error that says why: invalid
        input, unknown org when auto-creation is off, an idempotency conflict, or an amount
        out of bounds: with the event, its org's month would come, at the org's terms as they
        stand, to more than an invoice may). Refused events write nothing; the others are
        committed together, by set-based statements. The result also holds each touched
        counter's new total. With `keep_uncounted`, an event of a name no metric counts is
        kept, counted by nothing (the incumbents' protocols), rather than refused.
        """
        careful: frozenset[MonthKey] = frozenset()
        while True:  # each round writes one event at a time for more months: it ends
            try:
                result = await self._record_batch(reports, uow, careful, keep_uncounted)
            except _Beyond as beyond:
                careful |= beyond.months
                continue
            if uow is None:  # committed (a caller's transaction counts them when it commits)
                count_outcomes(result.outcomes)
            return result

    async def _record_batch(
        self,
        reports: Sequence[UsageReportLike],
        uow: UnitOfWork | None,
        careful: frozenset[MonthKey],
        keep_uncounted: bool = False,
    ) -> UsageBatchResult:
        """`record_batch`, the events of the `careful` months one at a time, each judged
        against the bound on amounts; _Beyond, with nothing written, when the others take a
        month beyond it (the caller then writes again, careful of that month too)."""
        outcomes: list[UsageOutcome | None] = [None] * len(reports)
        async with self._tx.begin(uow) as unit, _undone_if_raises(unit, joined=uow is not None):
            received_at = self._clock()
            intake = Intake(
                received_at,
                await self._metrics.by_key(unit),
                self._window,
                keep_uncounted=keep_uncounted,
            )
            valid: list[tuple[int, UsageEvent]] = []
            for index, raw in enumerate(reports):
                try:
                    event = intake.judge(
                        org_id=raw.org_id,
                        metric=raw.metric,
                        quantity=raw.quantity,
                        idempotency_key=raw.idempotency_key,
                        occurred_at=raw.occurred_at,
                        properties=raw.properties,
                        event=raw.event,
                        observed_at=raw.observed_at,
                    )
                except BillingError as exc:
                    outcomes[index] = UsageOutcome(RecordStatus.REFUSED, None, exc)
                else:
                    valid.append((index, event))
            admission = await self._orgs.admit(
                {event.org_id for _, event in valid}, received_at, unit
            )
            countable = valid
            if unknown := admission.unknown:
                for index, event in valid:
                    if event.org_id in unknown:
                        outcomes[index] = UsageOutcome(
                            RecordStatus.REFUSED, event, admission.refusal(event.org_id)
                        )
                countable = [(i, e) for i, e in valid if e.org_id not in unknown]
            statuses, totals = await self._ingest_bounded(
                unit, [event for _, event in countable], careful
            )
        # Answered once committed: until then, the counters written hold their row locks.
        created = admission.created
        first_of_org: dict[str, int] = {}
        for index, event in countable if created else ():  # an org's first event created it
            first_of_org.setdefault(event.org_id, index)
        for (index, event), status in zip(countable, statuses, strict=True):
            if isinstance(status, AmountOutOfBounds):
                outcomes[index] = UsageOutcome(RecordStatus.REFUSED, event, status)
            elif status is RecordStatus.CONFLICT:
                error = IdempotencyConflict(
                    f"idempotency key {event.idempotency_key!r} was already used for org "
                    f"{event.org_id!r} with another payload (event or metric, quantity, "
                    "properties, or event time)",
                    org_id=event.org_id,
                    idempotency_key=event.idempotency_key,
                )
                outcomes[index] = UsageOutcome(RecordStatus.REFUSED, event, error)
            else:
                outcomes[index] = UsageOutcome(
                    status,
                    event,
                    None,
                    created_org=event.org_id in created and index == first_of_org[event.org_id],
                )
        return UsageBatchResult(tuple(o for o in outcomes if o is not None), totals)

    async def _ingest_bounded(
        self, unit: UnitOfWork, events: Sequence[UsageEvent], careful: frozenset[MonthKey]
    ) -> tuple[list[RecordStatus | AmountOutOfBounds], dict[CounterKey, int]]:
        """`_ingest` the events, those of the `careful` months one at a time, each under a
        savepoint: one that would take its month beyond the bound is taken back, and its
        status is the refusal. _Beyond when the others take a month beyond it."""
        statuses: list[RecordStatus | AmountOutOfBounds] = [RecordStatus.ACCEPTED] * len(events)
        alone = [n for n, e in enumerate(events) if (e.org_id, e.period_start) in careful]
        together = [n for n, e in enumerate(events) if (e.org_id, e.period_start) not in careful]
        written, totals, beyond = await self._ingest(unit, [events[n] for n in together])
        if beyond:
            raise _Beyond(frozenset(beyond))
        for n, status in zip(together, written, strict=True):
            statuses[n] = status
        for n in alone:
            event = events[n]
            savepoint = await unit.connection.begin_nested()
            [status], counted, beyond = await self._ingest(unit, [event])
            month = MonthKey(event.org_id, event.period_start)
            if month in beyond:
                await savepoint.rollback()
                refusal = beyond_bounds(event.org_id, event.period_start, beyond[month])
                assert refusal is not None, "a month in `beyond` is beyond the bound"
                statuses[n] = refusal
            else:
                await savepoint.commit()
                statuses[n] = status
                totals |= counted
        return statuses, totals

    async def _ingest(
        self, unit: UnitOfWork, events: Sequence[UsageEvent]
    ) -> tuple[list[RecordStatus], dict[CounterKey, int], dict[MonthKey, Decimal]]:
        """Insert new events and add them to their counters, set-based; one status per event
        (ACCEPTED, DUPLICATE, or CONFLICT for a reused key with a different payload), the
        new totals of the counters added to, and what each org month the write took beyond
        the bound on amounts comes to (nothing is undone here: the caller undoes)."""
        if not events:
            return [], {}, {}
        usage = UsageRepository(unit)
        first: dict[tuple[str, str], UsageEvent] = {}
        for event in events:  # a key repeated inside the batch is judged against its first use
            first.setdefault((event.org_id, event.idempotency_key), event)
        # In key order: concurrent batches sharing keys in other orders then wait on each
        # other's rows in one order, instead of deadlocking.
        ordered = [first[key] for key in sorted(first)]
        written = await usage.write_events(ordered)
        new = ordered
        if len(written.inserted) < len(ordered):
            new = [e for e in ordered if (e.org_id, e.idempotency_key) in written.inserted]
        unique = await usage.insert_unique_lines(new)
        # Every other event repeats a stored key (one stored before, or by this batch). The
        # insert compared those it skipped with what is stored; the rest (a key repeated in
        # the batch, a key a concurrent sender stored meanwhile) are compared now, in SQL.
        # Before the counters are written: from then on, their rows are locked until the
        # transaction ends, and concurrent batches of the same orgs wait.
        statuses = [RecordStatus.ACCEPTED] * len(events)
        if len(new) < len(events):  # some not inserted, or repeated in the batch
            statuses = await _repeats_judged(usage, events, first, written)
        now = self._clock()
        increments = counter_increments(new, unique)
        moved = await usage.add_to_counters(increments, now)
        # A max's counter rises or stays, a latest's takes a later line's value or stays:
        # what the write added is not known (None).
        moved |= await usage.raise_counters(counter_peaks(new), now)
        moved |= await usage.take_lasts(counter_lasts(new), now)
        await usage.add_skips(skip_counts(new), now)
        if beyond := await _months_beyond(usage, moved, now):
            return statuses, {}, beyond  # undone by the caller: no alerts to write
        readings = {
            key: m.reading if key not in increments else replace(m.reading, added=increments[key])
            for key, m in moved.items()
        }
        await self._alerts.counters_moved(readings, now, unit)
        totals = {key: reading.used for key, reading in readings.items()}
        return statuses, totals, {}

    async def record_within(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        *,
        idempotency_key: str,
        most: int | None,
        now: datetime,
        uow: UnitOfWork,
    ) -> CeilingWrite:
        """Record `quantity` of `metric` at `now` (the moment `most` was worked out for, so
        that both fall in one period), as one event keyed `idempotency_key`, only if
        the counter's total stays at most `most` (None: no bound). The counter is judged and
        added to by one atomic statement, so concurrent writers never pass `most` together.
        The org must exist. A key the org already used raises IdempotencyConflict (in
        `uow`, which the caller rolls back); invalid input raises before anything is
        written."""
        event = await self._new_event(org_id, metric, quantity, idempotency_key, None, now, uow)
        usage = UsageRepository(uow)
        inserted, after = await usage.record_within(event, most)
        if not inserted:
            raise _key_used(org_id, idempotency_key)
        key = CounterKey(event.org_id, event.period_start, metric)
        if after is None:
            await usage.delete_event(event)
            return await _no_room(usage, key)
        if after.moved is not None:
            await _within_bounds(usage, {key: after.moved}, now)
        if after.terms is not None:
            reading = Reading(after.used, after.terms, added=quantity)
            await self._alerts.counters_moved({key: reading}, now, uow)
        return CeilingWrite(recorded=True, used=after.used - quantity, held=after.held)

    async def hold_within(
        self, key: CounterKey, quantity: int, *, most: int | None, now: datetime, uow: UnitOfWork
    ) -> CeilingWrite:
        """Hold `quantity` units on the counter `key` for a reservation, only if its usage
        and holds together stay at most `most` (None: no bound), judged and written by one
        atomic statement as `record_within` does."""
        usage = UsageRepository(uow)
        after = await usage.hold_within(key, quantity, most, now)
        if after is None:
            return await _no_room(usage, key)
        return CeilingWrite(recorded=True, used=after.used, held=after.held - quantity)

    async def record_held(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        *,
        idempotency_key: str,
        occurred_at: datetime,
        released: int,
        now: datetime,
        uow: UnitOfWork,
    ) -> None:
        """Record the usage a reservation made at `occurred_at` turned out to be, as one
        event keyed `idempotency_key`, and take the `released` units it held off the same
        counter, in one statement. Always counted: never refused for a limit. A key the org
        already used raises IdempotencyConflict (in `uow`, which the caller rolls back)."""
        made = await self._new_event(
            org_id, metric, quantity, idempotency_key, occurred_at, now, uow
        )
        event = replace(made, occurred_at_given=False)  # dated by the kernel: when reserved
        usage = UsageRepository(uow)
        if not await usage.insert_events([event]):  # the event first, as every writer
            raise _key_used(org_id, idempotency_key)
        key = CounterKey(event.org_id, event.period_start, metric)
        moved = await usage.add_releasing(key, quantity, released, now)
        await _within_bounds(usage, {key: moved}, now)
        await self._alerts.counters_moved({key: replace(moved.reading, added=quantity)}, now, uow)

    async def _new_event(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        idempotency_key: str,
        occurred_at: datetime | None,
        now: datetime,
        uow: UnitOfWork,
    ) -> UsageEvent:
        """One event received at `now`, validated (InvalidInput or UnknownMetric)."""
        return new_usage_event(
            org_id=org_id,
            metric=metric,
            quantity=quantity,
            idempotency_key=idempotency_key,
            occurred_at=occurred_at,
            received_at=now,
            catalogue=await self._metrics.by_key(uow),
            window=self._window,
        )

    async def release_holds(
        self, releases: Mapping[CounterKey, int], now: datetime, uow: UnitOfWork
    ) -> None:
        """Give back units held on counters, as reservations are released or expire."""
        await UsageRepository(uow).release_holds(dict(sorted(releases.items())), now)

    async def has_event(self, org_id: str, idempotency_key: str, uow: UnitOfWork) -> bool:
        """Whether the org has a usage event under `idempotency_key`."""
        return await UsageRepository(uow).has_event(org_id, idempotency_key)

    async def update_counters(
        self,
        org_id: str,
        increments: Mapping[str, int],
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> bool:
        """Best effort: record each metric's increment, and never raise into the caller.

        One transaction; each metric is judged alone, as in a batch. Returns whether all were
        recorded; a failure is logged and counted in `tracking_failures`. With
        `idempotency_key`, each metric's event is keyed `"{idempotency_key}:{metric}"`, so a
        retried call counts once.
        """
        base_key = idempotency_key or uuid.uuid4().hex
        try:
            result = await self.record_batch(
                [
                    UsageReport(org_id, metric, quantity, f"{base_key}:{metric}", occurred_at)
                    for metric, quantity in increments.items()
                ]
            )
            errors = [outcome.error for outcome in result.outcomes if outcome.error]
            if errors:
                raise errors[0]
        except Exception as exc:  # best-effort by contract: the product must not fail
            self.tracking_failures += 1
            level = logging.WARNING if isinstance(exc, BillingError) else logging.ERROR
            logger.log(
                level,
                "usage for org %r not recorded: %s",
                org_id,
                exc,
                exc_info=not isinstance(exc, BillingError),
            )
            return False
        return True

    async def record_seats(
        self, org_id: str, before: int, after: int, now: datetime, uow: UnitOfWork
    ) -> dict[str, int]:
        """Write down a membership change from `before` members to `after`, for each seats
        metric: the months since the last recorded peak had `before` throughout (see
        `months_to_carry_seats`), and the peak of the period of `now` rises to the higher of
        the two. Returns each seats metric's peak after the change."""
        period = BillingPeriod.containing(now)
        usage = UsageRepository(uow)
        peaks = {}
        for metric in await self._metrics.catalogue(uow):
            if metric.aggregation is not Aggregation.SEATS:
                continue
            last = await UsageHistory(uow).last_period_with(org_id, metric.key, before=period.key)
            for month in months_to_carry_seats(last, period):
                await usage.raise_to_at_least(
                    CounterKey(org_id, month.key, metric.key), before, now
                )
            peaks[metric.key] = await usage.raise_to_at_least(
                CounterKey(org_id, period.key, metric.key), max(before, after), now
            )
        await self._alerts.counters_moved(
            {CounterKey(org_id, period.key, metric): peak for metric, peak in peaks.items()},
            now,
            uow,
        )
        return {metric: peak.used for metric, peak in peaks.items()}


class _Beyond(Exception):
    """A batch's write took org months beyond the bound on amounts: its writes are undone,
    and it is written again with the events of those months one at a time."""

    def __init__(self, months: frozenset[MonthKey]) -> None:
        super().__init__(months)
        self.months = months


@asynccontextmanager
async def _undone_if_raises(unit: UnitOfWork, *, joined: bool) -> AsyncIterator[None]:
    """In a unit of work the caller `joined` us to, a savepoint: what the block wrote is
    undone if it raises, and the caller's writes kept. In our own, the transaction's
    rollback undoes it: nothing to add."""
    if not joined:
        yield
        return
    async with unit.connection.begin_nested():
        yield


async def _months_beyond(
    usage: UsageRepository, moved: Mapping[CounterKey, Moved], now: datetime
) -> dict[MonthKey, Decimal]:
    """What each org month a write `moved` counters of comes to, of those it took beyond the
    bound on amounts: each month near the bound priced in full (`months_to_price`), in
    order, as they are held one by one."""
    beyond = {}
    for month in sorted(months_to_price(moved)):
        fee, charges = await usage.month_priced(*month, now)
        if beyond_bounds(*month, total := month_total(fee, charges)) is not None:
            beyond[month] = total
    return beyond


async def _within_bounds(
    usage: UsageRepository, moved: Mapping[CounterKey, Moved], now: datetime
) -> None:
    """AmountOutOfBounds if the write that `moved` these counters took a month beyond the
    bound on amounts (its unit of work is then the caller's to roll back)."""
    for month, total in (await _months_beyond(usage, moved, now)).items():
        refusal = beyond_bounds(*month, total)
        assert refusal is not None, "a month beyond the bound is refused"
        raise refusal


def _key_used(org_id: str, idempotency_key: str) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"idempotency key {idempotency_key!r} was already used for org {org_id!r}",
        org_id=org_id,
        idempotency_key=idempotency_key,
    )


async def _no_room(usage: UsageRepository, key: CounterKey) -> CeilingWrite:
    """A conditional write that did not fit: the counter as it found it."""
    found = await usage.counter(key)
    return CeilingWrite(recorded=False, used=found.used, held=found.held)


async def _repeats_judged(
    usage: UsageRepository,
    events: Sequence[UsageEvent],
    first: Mapping[tuple[str, str], UsageEvent],
    written: Written,
) -> list[RecordStatus]:
    """Each event's status when not all were new: ACCEPTED for those inserted, else
    DUPLICATE or CONFLICT, as the insert compared it with what is stored, or, for a key
    repeated in the batch or stored by a concurrent sender meanwhile, `conflicts`."""
    statuses: list[RecordStatus] = []
    unsure: list[int] = []  # positions of the repeats the insert did not compare
    for position, event in enumerate(events):
        key = (event.org_id, event.idempotency_key)
        if event is first[key] and key in written.inserted:
            statuses.append(RecordStatus.ACCEPTED)
        elif event is first[key] and key in written.differs:
            differs = written.differs[key]
            statuses.append(RecordStatus.CONFLICT if differs else RecordStatus.DUPLICATE)
        else:  # a duplicate, unless `conflicts` finds it differs
            unsure.append(position)
            statuses.append(RecordStatus.DUPLICATE)
    conflicting = await usage.conflicts([events[position] for position in unsure])
    for n in conflicting:
        statuses[unsure[n]] = RecordStatus.CONFLICT
    return statuses


def count_outcomes(outcomes: Sequence[UsageOutcome]) -> None:
    """Count committed events by outcome for the operators' metrics."""
    tally: dict[str, int] = {}
    for outcome in outcomes:
        tally[outcome.status.value] = tally.get(outcome.status.value, 0) + 1
    for status, events in tally.items():
        EVENTS.labels(status).inc(events)
