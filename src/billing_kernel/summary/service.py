"""An org's billing summary and the billing page's data: read from every capability in one
transaction, combined by the pure rules in `summary.rules`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from itertools import islice

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.members.service import MemberService
from billing_kernel.metrics.rules import used_and_peak
from billing_kernel.metrics.service import MetricService
from billing_kernel.orgs.service import OrgService
from billing_kernel.plans.rules import Plan
from billing_kernel.plans.service import PlanService
from billing_kernel.quota.service import QuotaService
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService
from billing_kernel.summary.rules import (
    Granularity,
    OrgBillingSummary,
    OrgDashboard,
    PeriodUsage,
    UsageHistory,
    build_dashboard,
    build_summary,
    daily_usage,
    grouped,
    monthly_usage,
    point_starts,
    validate_group_by,
)
from billing_kernel.usage.service import UsageReader


class SummaryService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        *,
        metrics: MetricService,
        plans: PlanService,
        orgs: OrgService,
        subscriptions: SubscriptionService,
        members: MemberService,
        usage: UsageReader,
        quota: QuotaService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._metrics = metrics
        self._plans = plans
        self._orgs = orgs
        self._subscriptions = subscriptions
        self._members = members
        self._usage = usage
        self._quota = quota

    async def period_usage(self, org_id: str, uow: UnitOfWork | None = None) -> PeriodUsage:
        """What the org has used in the current calendar month (UTC)."""
        period = BillingPeriod.containing(self._clock())
        async with self._tx.begin(uow) as unit:
            await self._orgs.require(org_id, unit)
            counters = await self._usage.counters(org_id, period, unit)
            seats = await self._members.seat_count(org_id, unit)
            used: dict[str, int] = {}
            peaks: dict[str, int] = {}
            for metric in await self._metrics.catalogue(unit):
                used[metric.key], peak = used_and_peak(metric, counters.get(metric.key, 0), seats)
                if peak is not None:
                    peaks[metric.key] = peak
        return PeriodUsage(org_id=org_id, period=period, used=used, peaks=peaks)

    async def summary(
        self,
        org_id: str,
        uow: UnitOfWork | None = None,
        *,
        period: BillingPeriod | None = None,
        plan: Plan | None = None,
    ) -> OrgBillingSummary:
        """Plan, state, period, and each metric's usage against the org's effective limit.

        `period` (default: the current month) may be another month: its stored usage, and
        for seats its peak as the count, against the org's plan (or `plan`, the one that
        priced it) and overrides as they are now (a month that has not started has none
        yet)."""
        now = self._clock()
        current = BillingPeriod.containing(now)
        period = period or current
        async with self._tx.join(uow) as unit:
            state = await self._subscriptions.billing_state(org_id, unit)
            catalogue = await self._metrics.catalogue(unit)
            counters = await self._usage.counters(org_id, period, unit)
            members = await self._members.seat_count(org_id, unit)
            if period != current:  # a closed month's seats are its peak, not today's count
                by_month = {(period.key, key): value for key, value in counters.items()}
                peaks = await self._usage.seat_peaks_by_month(
                    org_id, by_month, [period.key], catalogue, members, unit
                )
                counters = {key: value for (_, key), value in peaks.items()}
            plan = plan or await self._plans.get(state.plan_slug, unit, version=state.plan_version)
            by_value = {}
            for key, terms in plan.metrics.items():
                if terms.dimension is not None and counters.get(key):
                    by_value[key] = await self._usage.value_totals(
                        org_id,
                        period.key,
                        key,
                        terms.dimension.property,
                        terms.dimension.values(),
                        uow=unit,
                    )
            return build_summary(
                plan=plan,
                state=state,
                period=period,
                catalogue=catalogue,
                counters=counters,
                seat_count=members if period == current else None,
                overrides=await self._quota.overrides(org_id, unit),
                now=now,
                by_value=by_value,
            )

    async def usage_history(
        self,
        org_id: str,
        *,
        first: BillingPeriod | None = None,
        last: BillingPeriod | None = None,
        granularity: Granularity = Granularity.MONTH,
        after: str | None = None,
        limit: int = 50,
        group_by: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> UsageHistory:
        """A page of the org's usage from the month `first` to the month `last` (both
        included; default: the current month), per month or per UTC day, up to now: at most
        `limit` points, those after the cursor `after` (a point's start, ISO 8601); with
        `group_by`, each point's usage also split by that property's values.
        OrgNotFound for an unknown org."""
        if group_by is not None:
            validate_group_by(group_by)
        now = self._clock()
        last = last or BillingPeriod.containing(now)
        first = first or last
        starts = list(islice(point_starts(first, last, granularity, now, after), limit + 1))
        page = starts[:limit]
        async with self._tx.read(uow) as unit:
            await self._orgs.require(org_id, unit)
            catalogue = await self._metrics.catalogue(unit)
            if not page:
                points = []
            elif granularity is Granularity.MONTH:
                counters = await self._usage.counters_between(
                    org_id,
                    BillingPeriod.starting(page[0]),
                    BillingPeriod.starting(page[-1]).next(),
                    unit,
                )
                members = await self._members.seat_count(org_id, unit)
                peaks = await self._usage.seat_peaks_by_month(
                    org_id, counters, page, catalogue, members, unit
                )
                points = monthly_usage(page, catalogue, peaks)
            else:
                per_day: dict[tuple[date, str], int] = {}
                for month in {BillingPeriod.starting(day.replace(day=1)) for day in page}:
                    per_day.update(await self._usage.daily_totals(org_id, month, unit))
                points = daily_usage(page, catalogue, per_day)
            if group_by is not None and page:
                totals = await self._usage.grouped_totals(
                    org_id,
                    BillingPeriod.starting(page[0].replace(day=1)),
                    BillingPeriod.starting(page[-1].replace(day=1)).next(),
                    group_by,
                    by_day=granularity is Granularity.DAY,
                    uow=unit,
                )
                points = grouped(points, totals)
        return UsageHistory(first, last, granularity, tuple(points), more=len(starts) > limit)

    async def dashboard(
        self,
        org_id: str,
        *,
        months: int = 6,
        include_plans: bool = False,
        uow: UnitOfWork | None = None,
    ) -> OrgDashboard:
        """The summary, this month's usage per day, the previous `months` months' totals,
        each metric's decision on one more unit and, for admins, the plans on offer: one
        transaction, for the billing page."""
        async with self._tx.join(uow) as unit:
            summary = await self.summary(org_id, unit)
            oldest = summary.period
            past_months = []
            for _ in range(months):
                oldest = oldest.previous()
                past_months.append(oldest.key)
            past = await self._usage.counters_between(org_id, oldest, summary.period, unit)
            catalogue = [line.metric for line in summary.usage]
            # The summary of the current month read the live member count: seats' `used`.
            members = next((line.used for line in summary.usage if line.peak is not None), 0)
            return build_dashboard(
                summary,
                oldest=oldest,
                per_day=await self._usage.daily_totals(org_id, summary.period, unit),
                past=await self._usage.seat_peaks_by_month(
                    org_id, past, past_months, catalogue, members, unit
                ),
                plans=await self._plans.list_active(unit, offered=True) if include_plans else [],
                decisions={
                    metric.key: await self._quota.check(org_id, metric.key, 1, uow=unit)
                    for metric in catalogue
                },
            )
