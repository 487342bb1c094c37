"""Usage alerts, decided in the transaction of the write that moved a counter.

Every usage writer (a batch, a consume, a reservation's commit, a seat change) tells
`counters_moved` the counters it moved, with their totals after, in its own unit of work:
the thresholds reached are crossed by one conditional upsert on their alert state, and the
event of each crossing is added to the event log in the same transaction. A counter's row
lock orders its writers, and the upsert crosses a threshold only where it is not crossed,
so each (org, metric, period, threshold) is crossed once however the usage arrives. A
change of limit or thresholds (`reevaluate`) resolves what usage is now under, and crosses
what it is now over.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime

from billing_kernel.alerts.repository import AlertRepository, Transition
from billing_kernel.alerts.rules import (
    BLOCKED,
    AlertFacts,
    AlertKey,
    AlertRow,
    AlertState,
    AlertTerms,
    Reading,
    Threshold,
    alert_event,
    crossed_by,
    format_thresholds,
    parse_thresholds,
    standing,
    threshold_set,
)
from billing_kernel.common.keys import CounterKey
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import MetricNotInPlan, OrgNotFound
from billing_kernel.events.rules import Event, EventType
from billing_kernel.events.service import EventLog
from billing_kernel.metrics.service import MetricService
from billing_kernel.plans.service import PlanService

_parsed = functools.lru_cache(maxsize=256)(parse_thresholds)


class AlertService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        metrics: MetricService,
        plans: PlanService,
        log: EventLog,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._metrics = metrics
        self._plans = plans
        self._log = log

    async def counters_moved(
        self, moved: Mapping[CounterKey, Reading], now: datetime, uow: UnitOfWork
    ) -> list[Event]:
        """Cross the thresholds the writes went across, in `uow` (the write's own
        transaction, whose counter statements also read each counter's limit and
        thresholds: `db.limits`); returns the events of the crossings this call made. A
        write that reached no threshold, or only ones reached before it, costs nothing
        more: the counter's row lock orders its writers, so what was there before a write
        is its total less what it added (thresholds that a change of limit put usage over
        are crossed by `reevaluate`)."""
        rows: list[AlertRow] = []
        for (org_id, period, metric), reading in moved.items():
            terms = reading.terms
            thresholds = _parsed(terms.thresholds)
            for crossed in crossed_by(reading.used, reading.added, terms.limit, thresholds):
                key = AlertKey(org_id, period, metric, crossed.key)
                rows.append(AlertRow(key, reading.used, terms.limit))
        if not rows:
            return []
        return await self._cross(uow, rows, now)

    async def blocked(
        self,
        org_id: str,
        metric: str,
        period: date,
        used: int,
        limit: int | None,
        now: datetime,
        uow: UnitOfWork,
    ) -> list[Event]:
        """A hard limit blocked the org's use of `metric`: `quota.blocked`, once per period
        (again only after a change of limit unblocked it)."""
        block = AlertRow(AlertKey(org_id, period, metric, BLOCKED), used, limit)
        return await self._cross(uow, [block], now)

    async def reevaluate(self, org_id: str, uow: UnitOfWork) -> list[Event]:
        """After the org's limits or thresholds changed: in the current period, resolve the
        crossed thresholds its usage is now under (or that are no longer set), and cross
        those it is now over. A block ends, with no event, once usage is under the limit."""
        now = self._clock()
        period = BillingPeriod.containing(now).key
        repo = AlertRepository(uow)
        used = await repo.counters(org_id, period)
        crossed: dict[str, set[str]] = defaultdict(set)
        for state in await repo.states(org_id, period, crossed_only=True):
            crossed[state.metric].add(state.threshold)
        names = sorted(set(used) | set(crossed))
        terms = await repo.terms((org_id, metric) for metric in names)
        to_cross: list[AlertRow] = []
        to_resolve: list[AlertRow] = []
        unblocked: list[AlertRow] = []
        for metric in names:
            found = terms.get((org_id, metric)) or AlertTerms(None, "", own=False)
            usage = used.get(metric, 0)
            now_standing = standing(usage, found.limit, _parsed(found.thresholds), crossed[metric])

            alert = functools.partial(AlertKey, org_id, period, metric)
            to_cross += [AlertRow(alert(t.key), usage, found.limit) for t in now_standing.cross]
            to_resolve += [AlertRow(alert(k), usage, found.limit) for k in now_standing.resolve]
            if BLOCKED in crossed[metric] and (found.limit is None or usage < found.limit):
                unblocked.append(AlertRow(alert(BLOCKED), usage, found.limit))
        await repo.resolve(unblocked, now)
        resolved = await repo.resolve(to_resolve, now)
        events = _events(EventType.THRESHOLD_RESOLVED, resolved, to_resolve, now)
        await self._log.record(events, uow)
        return events + await self._cross(uow, to_cross, now)

    async def _cross(self, uow: UnitOfWork, rows: Sequence[AlertRow], now: datetime) -> list[Event]:
        """Cross the thresholds of `rows` not crossed yet, and record their events."""
        if not rows:
            return []
        made = await AlertRepository(uow).cross(rows, now)
        events = [
            *_events(
                EventType.THRESHOLD_CROSSED,
                [t for t in made if t.key.threshold != BLOCKED],
                rows,
                now,
            ),
            *_events(
                EventType.QUOTA_BLOCKED, [t for t in made if t.key.threshold == BLOCKED], rows, now
            ),
        ]
        await self._log.record(events, uow)
        return events

    async def thresholds(
        self, org_id: str, uow: UnitOfWork | None = None
    ) -> dict[str, tuple[tuple[Threshold, ...], int | None, bool]]:
        """Each metric's thresholds for the org, its limit, and whether they are the org's
        own (else its plan's); OrgNotFound for an org with no billing state."""
        async with self._tx.read(uow) as unit:
            catalogue = await self._metrics.catalogue(unit)
            terms = await AlertRepository(unit).terms((org_id, m.key) for m in catalogue)
        if not terms:
            raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)
        return {
            metric.key: (
                _parsed(terms[org_id, metric.key].thresholds),
                terms[org_id, metric.key].limit,
                terms[org_id, metric.key].own,
            )
            for metric in catalogue
        }

    async def set_thresholds(
        self,
        org_id: str,
        metric: str,
        thresholds: Iterable[Threshold] | None,
        uow: UnitOfWork | None = None,
    ) -> list[Event]:
        """Give the org its own thresholds for `metric` (replacing its plan's; empty: none),
        or with None return it to its plan's; the alerts the change crossed or resolved in
        the current period are emitted at once, and returned."""
        text = None if thresholds is None else format_thresholds(threshold_set(thresholds))
        async with self._tx.begin(uow) as unit:
            await self._metrics.get(metric, unit)
            repo = AlertRepository(unit)
            if not await repo.terms([(org_id, metric)]):
                raise OrgNotFound(f"no org {org_id!r}", org_id=org_id)
            if text is None:
                await repo.clear_org_thresholds(org_id, metric)
            else:
                await repo.set_org_thresholds(org_id, metric, text, self._clock())
            return await self.reevaluate(org_id, unit)

    async def set_plan_thresholds(
        self,
        plan_slug: str,
        metric: str,
        thresholds: Iterable[Threshold],
        uow: UnitOfWork | None = None,
    ) -> list[Event]:
        """Set what the plan alerts at for `metric` (empty: nothing), for every org on it
        that has no thresholds of its own for the metric; orgs on the plan with usage this
        period are reevaluated at once."""
        text = format_thresholds(threshold_set(thresholds))
        async with self._tx.begin(uow) as unit:
            plan = await self._plans.get(plan_slug, unit)
            if metric not in plan.metrics:
                raise MetricNotInPlan(
                    f"plan {plan_slug!r} has no terms for {metric!r}",
                    plan_slug=plan_slug,
                    metric=metric,
                )
            repo = AlertRepository(unit)
            await repo.set_plan_thresholds(plan.slug, metric, text)
            period = BillingPeriod.containing(self._clock()).key
            events = []
            for org_id in await repo.orgs_on_plan_with_usage(plan.slug, period):
                events += await self.reevaluate(org_id, unit)
            return events

    async def plan_thresholds(
        self, plan_slug: str, uow: UnitOfWork | None = None
    ) -> dict[str, tuple[Threshold, ...]]:
        """What the plan alerts at, by metric."""
        async with self._tx.read(uow) as unit:
            stored = await AlertRepository(unit).plan_thresholds(plan_slug)
        return {metric: _parsed(text) for metric, text in stored.items()}

    async def states(
        self, org_id: str, period: BillingPeriod, uow: UnitOfWork | None = None
    ) -> list[AlertState]:
        """The org's alerts in one period (crossed and resolved), blocks included."""
        async with self._tx.read(uow) as unit:
            return await AlertRepository(unit).states(org_id, period.key)

    async def dismiss(
        self,
        org_id: str,
        metric: str,
        threshold: str,
        period: BillingPeriod,
        uow: UnitOfWork | None = None,
    ) -> bool:
        """Hide a crossed alert from the billing page; whether there was one to hide."""
        async with self._tx.begin(uow) as unit:
            return await AlertRepository(unit).dismiss(
                AlertKey(org_id, period.key, metric, threshold), self._clock()
            )


def _events(
    event_type: EventType, made: Iterable[Transition], rows: Sequence[AlertRow], now: datetime
) -> list[Event]:
    """The events of the alert states a statement changed, in the order of `rows` (each
    counter's thresholds ascending), with their figures."""
    crossings = {transition.key: transition.crossings for transition in made}
    events = []
    for key, used, limit in rows:
        if key in crossings:
            facts = AlertFacts(
                key.org_id, key.metric, key.period_start, key.threshold, used, limit, crossings[key]
            )
            events.append(alert_event(event_type, facts, now))
    return events
