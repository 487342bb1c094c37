"""Presentation rules for the billing page: colours, numbers, money, dates, the chart. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from billing_kernel.alerts.rules import BLOCKED, AlertState, parse_threshold
from billing_kernel.common.money import money_text
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.discounts.rules import Redemption
from billing_kernel.events.rules import Event, EventType
from billing_kernel.features.rules import describe
from billing_kernel.invoices.rules import formula_for_people
from billing_kernel.payments.rules import PaymentStatus
from billing_kernel.plans.rules import Enforcement, Plan, PlanMetric, Policy
from billing_kernel.quota.rules import QuotaDecision, Reason
from billing_kernel.summary.rules import MetricUsage

WARNING_PERCENT = Decimal(80)
LIMIT_PERCENT = Decimal(100)
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


class Level(StrEnum):
    """How close a metric is to its limit; each comes with a word, never colour alone."""

    OK = "ok"
    NEAR = "near"
    OVER = "over"

    @property
    def word(self) -> str:
        return {"ok": "within limit", "near": "near limit", "over": "at or over limit"}[self]


def level(percent: Decimal | None) -> Level | None:
    """Green below 80 %, yellow from 80 % up to (not including) 100 %, red from 100 %;
    None when there is no bar (an unlimited or zero limit)."""
    if percent is None:
        return None
    if percent >= LIMIT_PERCENT:
        return Level.OVER
    if percent >= WARNING_PERCENT:
        return Level.NEAR
    return Level.OK


class LimitState(StrEnum):
    """What a metric's limit does to the next unit, when it does something; with a word."""

    BLOCKED = "blocked"
    GRACE = "grace"

    @property
    def word(self) -> str:
        return {"blocked": "Blocked", "grace": "In grace"}[self]


def limit_state(decision: QuotaDecision | None) -> LimitState | None:
    """BLOCKED when one more unit would be refused (a hard limit and its grace reached, or
    the org's billing status), GRACE when it would be allowed only by a grace; None else."""
    if decision is None:
        return None
    if not decision.allowed:
        return LimitState.BLOCKED
    if decision.reason is Reason.IN_GRACE:
        return LimitState.GRACE
    return None


def policy_text(policy: Policy) -> str:
    """How a limit is enforced, for the person who will run into it."""
    if policy.mode is Enforcement.SOFT:
        return "Soft limit: use beyond it is allowed, and billed as overage"
    grace = f" ({policy.grace_text()})" if policy.has_grace else ""
    return f"Hard limit{grace}: use beyond it is refused"


def count(value: int) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}"


def compact(value: int) -> str:
    """Short form for tight places: 950 -> '950', 1234 -> '1.2K', 1234567 -> '1.2M'."""
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(value) >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(value)


def exact_compact(value: int) -> str:
    """`compact` where it is exact (80,000,000 -> '80M', 1,500 -> '1.5K'), else the whole
    number (1,234,567 -> '1,234,567'): for where a price changes."""
    short = compact(value)
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if short.endswith(suffix):
            return short if value % (size // 10) == 0 else f"{value:,}"
    return short


def money(amount: Decimal, currency: str) -> str:
    """'$49.00', a credit '-$17.39'; a currency without a sign here is written as its code:
    'CHF 49.00'."""
    sign = CURRENCY_SIGNS.get(currency)
    minus = "-" if amount < 0 else ""
    digits = money_text(abs(amount), thousands=True)
    return f"{minus}{sign}{digits}" if sign else f"{minus}{currency} {digits}"


def period_span(period: BillingPeriod) -> str:
    """The period written once, as people say it: '1\N{EN DASH}30 November 2026'."""
    last = period.last_day
    return f"{period.key.day}\N{EN DASH}{last.day} {last:%B %Y}"


def day_month(day: date) -> str:
    """'24 Nov': a day in a chart's axis or table."""
    return f"{day.day} {day:%b}"


def long_day(day: date) -> str:
    """'1 December 2026'."""
    return f"{day.day} {day:%B %Y}"


def month_name(day: date) -> str:
    return f"{day:%B %Y}"


def overage_lines(terms: PlanMetric, currency: str) -> list[str]:
    """What a plan charges beyond what it includes of a metric, as the plans table shows it:
    ['then $0.02 per 1,000'], ['then $15.00 each'], a tiered price's name then a tier a line
    ['then graduated:', '$0.01 per 1,000 up to 80M', '$0.008 per 1,000 beyond'];
    ['no charge beyond'] when it charges nothing; none when unlimited."""
    if terms.included_quantity is None:
        return []
    if terms.is_free:
        return ["no charge beyond"]
    described = terms.price.described(lambda amount: money(amount, currency), exact_compact)
    if terms.dimension is None:
        first, *tiers = described
        return [f"then {first}", *tiers]
    prop = terms.dimension.property
    return [
        f"then by {prop}:",
        *(
            f"{listed.value}: {listed.price.describe(lambda a: money(a, currency), exact_compact)}"
            for listed in terms.dimension.prices
        ),
        f"other {prop} values: {' '.join(described)}",
    ]


def split_lines(line: MetricUsage, plan: Plan) -> list[str]:
    """A metric priced per value, its usage as its invoice lines split it, a value a line:
    'gpt-5: 60,000 tokens, all included', 'gpt-5-mini: 250,000 tokens, 210,000 over: about
    $4.10', 'other models: 50,000 tokens, 50,000 over: about $2.50'; none otherwise."""
    dimension = plan.allowance(line.metric.key).dimension
    if dimension is None:
        return []
    texts = []
    for share in line.shares:
        name = f"other {dimension.property} values" if share.value is None else share.value
        used = f"{name}: {count(share.used)} {line.metric.unit}"
        if share.over:
            cost = money(share.cost().amount, plan.currency)
            texts.append(f"{used}, {count(share.over)} over: about {cost}")
        elif share.used:
            texts.append(f"{used}, all included")
    return texts


def feature_rows(plans: Sequence[Plan]) -> list[tuple[str, list[str]]]:
    """What the offered plans grant besides quantities, side by side: a row per feature any
    of them grants ('max projects', then each plan's value in a word, '—' for none), in key
    order; none when no plan grants any."""
    keys = sorted({key for plan in plans for key in plan.features})
    return [
        (
            key.replace("_", " "),
            [describe(plan.features[key]) if key in plan.features else "—" for plan in plans],
        )
        for key in keys
    ]


def bar_width(percent: Decimal | None) -> str:
    """CSS width of a bar: the percentage, capped at 100 (the text says how far over)."""
    return "0%" if percent is None else f"{min(percent, LIMIT_PERCENT)}%"


@dataclass(frozen=True, slots=True)
class ChartBar:
    x: float
    y: float
    width: float
    height: float
    day: date
    value: int


@dataclass(frozen=True, slots=True)
class AxisTick:
    percent: float
    """Where the label's centre sits, as a percentage of the chart's width."""
    label: str


CHART_WIDTH = 600
CHART_HEIGHT = 120
TICK_EVERY_DAYS = 7


def chart_bars(days: Sequence[tuple[date, int]], slots: int = 0) -> list[ChartBar]:
    """Bars of a daily chart in a CHART_WIDTH x CHART_HEIGHT box, scaled to the busiest day.
    The box has `slots` places (a month's days, so the scale stays put as the month goes
    on; at least one per day given), filled from the left."""
    if not days:
        return []
    peak = max(value for _, value in days) or 1
    slot = CHART_WIDTH / max(slots, len(days))
    bars = []
    for index, (day, value) in enumerate(days):
        height = round(CHART_HEIGHT * value / peak, 2)
        bars.append(
            ChartBar(
                x=round(index * slot + slot * 0.1, 2),
                y=CHART_HEIGHT - height,
                width=round(slot * 0.8, 2),
                height=height,
                day=day,
                value=value,
            )
        )
    return bars


def axis_ticks(period: BillingPeriod) -> list[AxisTick]:
    """Date labels under a month's daily chart: the 1st and every seventh day after it,
    each centred under its bar."""
    return [
        AxisTick(
            percent=round((index + 0.5) * 100 / period.days, 2),
            label=day_month(period.key + timedelta(days=index)),
        )
        for index in range(0, period.days, TICK_EVERY_DAYS)
    ]


@dataclass(frozen=True, slots=True)
class Notice:
    """A current alert on the billing page: what to say, and what dismissing it names."""

    metric: str
    threshold: str
    period: str
    level: Level
    text: str


def notices(
    states: Sequence[AlertState], names: Mapping[str, str], period: BillingPeriod
) -> list[Notice]:
    """The period's crossed, undismissed threshold alerts (a block has its own panel), in
    the order of `names` (the page's metrics), the highest of each metric first."""
    shown = []
    for state in states:
        if (
            state.status != "crossed"
            or state.dismissed_at is not None
            or state.threshold == BLOCKED
        ):
            continue
        threshold = parse_threshold(state.threshold)
        at = threshold.at(state.limit)
        over = (  # at or beyond the limit: 100 % and more, or a quantity that far
            threshold.percent >= 100
            if threshold.percent is not None
            else state.limit is not None and (at or 0) >= state.limit
        )
        name = names.get(state.metric, state.metric)
        if threshold.percent is not None and state.limit is not None:
            text = (
                f"{name} reached {threshold.percent} % of the limit on "
                f"{day_month(state.crossed_at.date())}: {count(state.used)} of "
                f"{count(state.limit)} used."
            )
        else:
            text = (
                f"{name} reached {count(at or 0)} on {day_month(state.crossed_at.date())}: "
                f"{count(state.used)} used."
            )
        shown.append(
            Notice(
                metric=state.metric,
                threshold=state.threshold,
                period=period.label,
                level=Level.OVER if over else Level.NEAR,
                text=text,
            )
        )
    order = {metric: position for position, metric in enumerate(names)}
    return sorted(shown, key=lambda n: (order.get(n.metric, len(order)), n.level is not Level.OVER))


ALERT_TYPES = (
    EventType.THRESHOLD_CROSSED,
    EventType.THRESHOLD_RESOLVED,
    EventType.QUOTA_BLOCKED,
)
"""The events the page's alert history lists."""


def event_text(event: Event, names: Mapping[str, str]) -> str:
    """One line of the alert history."""
    data = event.data
    if event.event_type not in ALERT_TYPES:  # not an alert: its type and its facts
        return f"{event.event_type}: " + ", ".join(f"{k} {v}" for k, v in data.items())
    name = names.get(str(data.get("metric")), str(data.get("metric")))
    used = count(int(str(data["used"])))
    threshold = data.get("threshold")
    limit = data.get("limit")
    of_limit = "" if limit is None else f" of {count(int(str(limit)))}"
    if event.event_type is EventType.QUOTA_BLOCKED:
        return f"{name} blocked at the hard limit: {used}{of_limit} used."
    assert isinstance(threshold, dict)
    what = (
        f"{threshold['percent']} %"
        if threshold["percent"] is not None
        else count(int(str(threshold["quantity"])))
    )
    if event.event_type is EventType.THRESHOLD_RESOLVED:
        return f"{name} back under {what} after a change of limit: {used}{of_limit} used."
    return f"{name} reached {what}: {used}{of_limit} used."


_VERSION_TAG = re.compile(r" \(v([0-9]+)\)")


def without_version_tags(descriptions: Sequence[str]) -> list[str]:
    """Invoice line descriptions with the plan version tag ("Starter (v1)") left out, unless
    the lines name two versions of the same plan, where the tag tells them apart."""
    versions: dict[str, set[str]] = {}
    for text in descriptions:
        for found in _VERSION_TAG.finditer(text):
            name = text[: found.start()].rsplit(" ", 1)[-1]
            versions.setdefault(name, set()).add(found.group(1))
    if any(len(seen) > 1 for seen in versions.values()):
        return list(descriptions)
    return [_VERSION_TAG.sub("", text) for text in descriptions]


def shown_and_folded(lines: Sequence[MetricUsage]) -> tuple[list[MetricUsage], list[MetricUsage]]:
    """The summary's usage lines the page shows, and those it folds away: a metric the org's
    plan does not include (no allowance, limit 0) and the org has not used this month."""
    shown = [line for line in lines if line.limit != 0 or line.used or line.peak]
    return shown, [line for line in lines if line not in shown]


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """An invoice line as people read it."""

    description: str
    formula: str
    exact: str | None
    """The formula with every digit, when `formula` rounds it; None when it is the same."""
    amount: Decimal


class _Line(Protocol):
    """An upcoming invoice's line, or a stored one."""

    @property
    def description(self) -> str: ...
    @property
    def formula(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...


def invoice_rows(lines: Sequence[_Line]) -> list[InvoiceRow]:
    """Each line with its description free of version tags that tell nothing apart
    (`without_version_tags`) and its formula rounded for people (`formula_for_people`)."""
    described = without_version_tags([line.description for line in lines])
    rows = []
    for line, description in zip(lines, described, strict=True):
        shown = formula_for_people(line.formula)
        exact = None if shown == line.formula else line.formula
        rows.append(InvoiceRow(description, shown, exact, line.amount))
    return rows


class _Attempt(Protocol):
    """A collection attempt, as the page reads it."""

    @property
    def status(self) -> PaymentStatus: ...
    @property
    def failure_message(self) -> str | None: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def checkout_expires_at(self) -> datetime | None: ...


def payment_state(
    status: str, attempts: Sequence[_Attempt], has_card: bool, collecting: bool
) -> str:
    """An invoice's payment, in words: "Paid", "Void", what its last attempt came to
    ("Failed: Your card was declined. on 3 Dec 2026"), or, not yet tried, whether it waits
    for a card. `collecting`: the deployment collects through Stripe; otherwise an open
    invoice is simply "Open" (paid by other means, marked by hand). A pay-now page left
    unpaid charged nothing: the invoice reads as it did before it."""
    if status == "paid":
        return "Paid"
    if status == "void":
        return "Void"
    if not collecting:
        return "Open"
    last = attempts[-1] if attempts else None
    if last and last.status is PaymentStatus.PENDING and last.checkout_expires_at is not None:
        return "Being paid on Stripe's page"
    charged = [a for a in attempts if a.status is not PaymentStatus.CANCELED]
    if charged:
        last = charged[-1]
        if last.status is PaymentStatus.FAILED:
            why = (last.failure_message or "declined").rstrip(".")
            return f"Failed: {why} ({last.updated_at.day} {last.updated_at:%b %Y})"
        return "Processing"
    return "Being collected" if has_card else "Waiting for a card"


def card_text(brand: str, last4: str, exp_month: int, exp_year: int) -> str:
    """ "Visa ending 4242, expires 12/2031"."""
    return f"{brand.title()} ending {last4}, expires {exp_month:02d}/{exp_year}"


def discount_text(redemption: Redemption, now: datetime) -> str:
    """A coupon applied to the org, as its admins read it: what it takes off and until
    when ('Launch (LAUNCH20): 20% off, on the plan fee, through January 2027'), or that it
    has ended or was removed."""
    coupon = redemption.coupon
    text = f"{coupon.name} ({coupon.code}): {coupon.off}{coupon.on}"
    if redemption.removed_at is not None:
        return f"{text}, removed {long_day(redemption.removed_at.date())}"
    last = redemption.last_month
    if last is None:
        return f"{text}, every month"
    if last < BillingPeriod.containing(now).key:
        return f"{text}, ended with {month_name(last)}"
    return f"{text}, through {month_name(last)}"
