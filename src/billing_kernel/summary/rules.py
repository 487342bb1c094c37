"""The org billing summary: plan, state, period and per-metric usage against effective limits."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from billing_kernel.common.money import ZERO
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import PROPERTY_NAME_PATTERN, validate_property_name
from billing_kernel.metrics.rules import Metric, used_and_peak
from billing_kernel.orgs.rules import OrgBillingState
from billing_kernel.plans.rules import SOFT, Enforcement, Plan, Policy
from billing_kernel.pricing.rules import Share
from billing_kernel.quota.rules import (
    LimitOverride,
    QuotaDecision,
    effective_terms,
    limit_exceeded,
    percent_used,
    remaining,
)


@dataclass(frozen=True, slots=True)
class MetricUsage:
    """One metric's usage in the period against the org's effective limit."""

    metric: Metric
    used: int
    limit: int | None
    remaining: int | None
    percent_used: Decimal | None
    soft_limit_exceeded: bool
    overage_quantity: int
    overage_amount: Decimal
    peak: int | None = None
    """For seats: the highest member count in the period (overage is charged on it)."""
    policy: Policy = SOFT
    """How the limit is enforced, after the org's override."""
    shares: tuple[Share, ...] = ()
    """A metric priced per value: its usage split as its price splits it, each value with
    what the included quantity covers of it (`pricing.rules.shares`); else none."""


@dataclass(frozen=True, slots=True)
class OrgBillingSummary:
    org_id: str
    plan: Plan
    state: OrgBillingState
    period: BillingPeriod
    usage: tuple[MetricUsage, ...]
    generated_at: datetime

    @property
    def any_soft_limit_exceeded(self) -> bool:
        return any(line.soft_limit_exceeded for line in self.usage)

    @property
    def enforcement(self) -> Enforcement:
        """HARD when any metric's limit is hard (some use may be refused), else SOFT."""
        hard = any(line.policy.mode is Enforcement.HARD for line in self.usage)
        return Enforcement.HARD if hard else Enforcement.SOFT

    @property
    def estimated_overage(self) -> Decimal:
        """Sum of the rounded overage lines so far this period, in the plan's currency."""
        return sum((line.overage_amount for line in self.usage), ZERO)

    @property
    def trial_days_left(self) -> int | None:
        return self.state.trial_days_left(self.generated_at)

    def metric(self, key: str) -> MetricUsage:
        return next(line for line in self.usage if line.metric.key == key)


def metric_usage(
    metric: Metric,
    used: int,
    plan: Plan,
    overrides: Mapping[str, LimitOverride],
    peak: int | None = None,
    by_value: Mapping[str, int] | None = None,
) -> MetricUsage:
    """One metric's line: `used` against the org's limit; overage is on the `peak` for seats
    (see `used_and_peak`); a metric priced per value is priced per value as its invoice
    lines are, from the usage of each value it lists (`by_value`)."""
    org_terms = effective_terms(plan, metric.key, overrides)
    limit = org_terms.limit
    billed = used if peak is None else peak
    overage = 0 if limit is None else max(billed - limit, 0)
    terms = plan.allowance(metric.key)
    shares = terms.shares(billed, by_value or {}, limit)
    return MetricUsage(
        metric=metric,
        used=used,
        limit=limit,
        remaining=remaining(used, limit),
        percent_used=percent_used(used, limit),
        soft_limit_exceeded=limit_exceeded(used, limit),
        overage_quantity=overage,
        overage_amount=sum((share.cost().amount for share in shares), ZERO),
        peak=peak,
        policy=org_terms.policy,
        shares=shares if terms.dimension is not None else (),
    )


def build_summary(
    *,
    plan: Plan,
    state: OrgBillingState,
    period: BillingPeriod,
    catalogue: Sequence[Metric],
    counters: Mapping[str, int],
    seat_count: int | None,
    overrides: Mapping[str, LimitOverride],
    now: datetime,
    by_value: Mapping[str, Mapping[str, int]] | None = None,
) -> OrgBillingSummary:
    """Combine everything the kernel knows about an org's period into one summary.

    `counters` holds the period's stored counters by metric key; for seats metrics that is the
    period's recorded peak, while `seat_count` is the live member count (None for a closed
    period, whose seats are its peak). `by_value`: for the metrics priced per value, the
    usage of each value their price lists.
    """
    values = by_value or {}
    lines = tuple(
        metric_usage(metric, used, plan, overrides, peak, values.get(metric.key))
        for metric in catalogue
        for used, peak in [used_and_peak(metric, counters.get(metric.key, 0), seat_count)]
    )
    return OrgBillingSummary(
        org_id=state.org_id, plan=plan, state=state, period=period, usage=lines, generated_at=now
    )


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """An org's usage in one period: per metric, the amount used (for seats, the current
    member count) and, for seats, the period's peak."""

    org_id: str
    period: BillingPeriod
    used: Mapping[str, int]
    peaks: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class OrgDashboard:
    """Everything the billing page shows, gathered in one service call."""

    summary: OrgBillingSummary
    daily: Mapping[str, tuple[tuple[date, int], ...]]
    """Per metric: each day of the current period up to today, with the usage that day."""
    history: tuple[tuple[BillingPeriod, Mapping[str, int]], ...]
    """The previous months' totals per metric, oldest first (for seats: the peak), from the
    org's first month on."""
    plans: tuple[Plan, ...]
    """The active plans, for admins and owners; empty for members."""
    decisions: Mapping[str, QuotaDecision]
    """Per metric of the current period: the decision on one more unit now (whether it is
    blocked, in grace, and why, in plain words)."""


class Granularity(StrEnum):
    MONTH = "month"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class UsagePoint:
    """Usage in `[start, end)`: a month or a UTC day, per metric."""

    start: date
    end: date
    usage: Mapping[str, int]
    groups: Mapping[str, Mapping[str | None, int]] | None = None
    """With a grouping property: per metric, the usage of each of its values (None: events
    without it). Seats have none: they are not counted from events."""


GroupedTotals = Mapping[tuple[date, str], Mapping[str | None, int]]

GROUP_BY_PATTERN = PROPERTY_NAME_PATTERN


def validate_group_by(prop: str) -> str:
    """A property usage may be grouped by: 1-64 letters, digits, `_`, `.`, `:` or `-`."""
    return validate_property_name(prop, "group_by")


"""(a point's start, metric) to each property value's total."""


def grouped(points: Sequence[UsagePoint], totals: GroupedTotals) -> list[UsagePoint]:
    """`points` with their groups: each metric's values with usage in the point, the largest
    first (then by value), a point without any usage of a metric holding none for it."""
    return [
        replace(
            point,
            groups={
                metric: dict(
                    sorted(
                        totals.get((point.start, metric), {}).items(),
                        key=lambda item: (-item[1], item[0] is None, item[0] or ""),
                    )
                )
                for metric in point.usage
            },
        )
        for point in points
    ]


@dataclass(frozen=True, slots=True)
class UsageHistory:
    """One page of an org's usage from the month `first` to the month `last`."""

    first: BillingPeriod
    last: BillingPeriod
    granularity: Granularity
    points: tuple[UsagePoint, ...]
    more: bool
    """Points follow the last one on this page."""


def point_starts(
    first: BillingPeriod,
    last: BillingPeriod,
    granularity: Granularity,
    now: datetime,
    after: str | None,
) -> Iterator[date]:
    """The first day of each point from the month `first` to the month `last`, both
    included, up to now (no usage can lie later): months, or UTC days. Only those written
    (ISO 8601) after `after`, a page's cursor; none when `last` is before `first`."""
    end = min(last.last_day, now.date())
    if granularity is Granularity.MONTH:
        months = range(_month_number(first.key), _month_number(end) + 1)
        start = (
            0 if after is None else bisect_right(months, after, key=lambda n: _month(n).isoformat())
        )
        for number in months[start:]:
            yield _month(number)
        return
    days = range(first.key.toordinal(), end.toordinal() + 1)
    start = (
        0
        if after is None
        else bisect_right(days, after, key=lambda n: date.fromordinal(n).isoformat())
    )
    for ordinal in days[start:]:
        yield date.fromordinal(ordinal)


def _month_number(day: date) -> int:
    return day.year * 12 + day.month - 1


def _month(number: int) -> date:
    return date(number // 12, number % 12 + 1, 1)


def monthly_usage(
    months: Sequence[date],
    metrics: Sequence[Metric],
    counters: Mapping[tuple[date, str], int],
) -> list[UsagePoint]:
    """Each month's stored totals (seats: the month's peak), 0 where nothing was counted;
    `months` are their first days."""
    return [
        UsagePoint(
            month,
            BillingPeriod.starting(month).end.date(),
            {metric.key: counters.get((month, metric.key), 0) for metric in metrics},
        )
        for month in months
    ]


def daily_usage(
    days: Sequence[date], metrics: Sequence[Metric], per_day: Mapping[tuple[date, str], int]
) -> list[UsagePoint]:
    """Each day's accepted usage of the metrics events count toward (seats have no daily
    figure; a unique count's is the values new that day)."""
    recordable = [metric.key for metric in metrics if metric.counts_events]
    return [
        UsagePoint(
            day, day + timedelta(days=1), {key: per_day.get((day, key), 0) for key in recordable}
        )
        for day in days
    ]


def days_so_far(period: BillingPeriod, now: datetime) -> list[date]:
    """The days of `period` up to and including today (all of them for a past period)."""
    last = min(period.last_day, now.date())
    first = period.key
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def first_month(
    oldest: BillingPeriod, created_at: datetime, past: Mapping[tuple[date, str], int]
) -> BillingPeriod:
    """The first month a history of an org lists: the month it was created in, or an earlier
    one with usage (an event may be dated before its org was created), never before
    `oldest`. `past` holds counters by period start and metric."""
    used = [start for (start, _), value in past.items() if value]
    first = min([BillingPeriod.containing(created_at).key, *used])
    return BillingPeriod.starting(max(oldest.key, first))


def build_dashboard(
    summary: OrgBillingSummary,
    *,
    oldest: BillingPeriod,
    per_day: Mapping[tuple[date, str], int],
    past: Mapping[tuple[date, str], int],
    plans: Sequence[Plan],
    decisions: Mapping[str, QuotaDecision],
) -> OrgDashboard:
    """The billing page's data: `summary`, each recordable metric's usage per day so far
    (`per_day` by day and metric), and each month's totals from the org's first month (see
    `first_month`; at the earliest `oldest`) up to the summary's period (`past` by period
    start and metric; a month with no counter shows 0), with each metric's `decisions`. The
    org's own plan is shown at the version it is on, which may not be the one offered."""
    period = summary.period
    days = days_so_far(period, summary.generated_at)
    recordable = [line.metric.key for line in summary.usage if line.peak is None]
    history = []
    month = first_month(oldest, summary.state.created_at, past)
    while month.key < period.key:
        history.append(
            (
                month,
                {
                    line.metric.key: past.get((month.key, line.metric.key), 0)
                    for line in summary.usage
                },
            )
        )
        month = month.next()
    return OrgDashboard(
        summary=summary,
        daily={key: tuple((day, per_day.get((day, key), 0)) for day in days) for key in recordable},
        history=tuple(history),
        plans=tuple(summary.plan if plan.slug == summary.plan.slug else plan for plan in plans),
        decisions=dict(decisions),
    )
