"""What an org owes for one billing period, as invoice lines: a pure function of the plan
versions it was on, when, in which billing status, and how much it used.

The base fee is billed in arrears, prorated to the second:

- The plan in force at the period's start is billed in full (`base_fee`) if the org was then
  billable (`active` or `past_due`; a trial and a cancellation are not billed).
- Each change inside the period (of plan, version or billable status) at the instant `t`
  credits the unused rest of the period on what it leaves (`proration_credit`, negative) and
  charges the rest of the period on what it enters (`proration_charge`):
  `price x (period end - t) / (period length)`, in whole seconds. A change and its reverse at
  one instant therefore net to exactly zero, and any sequence of changes sums to the
  time-weighted price of the plans in force, within a cent per line.

Usage is priced by the plan in force at the period's end: one `overage` (or, for a seats
metric, `seats`) line per metric used beyond what is included, priced by the metric's price
model (`pricing.rules`: per unit, graduated or volume tiers, or packages), its formula the
arithmetic of that model. A metric priced per value of an event property has a line per
value priced apart and one for the other values, each billing what the shared included
quantity leaves of it (`pricing.rules.shares`). A period with no billable second bills no
usage.

Every line's amount is rounded once, half up, to cents (`common.money.round_money`); the
subtotal is the sum of the rounded lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

from billing_kernel.common.money import (
    MAX_AMOUNT,
    ZERO,
    exact_text,
    money_text,
    round_money,
    within_bounds,
)
from billing_kernel.common.periods import BillingPeriod, ensure_utc
from billing_kernel.discounts.rules import FEE, Coupon, Discountable, discounts
from billing_kernel.errors import CurrencyChange, PeriodNotClosed
from billing_kernel.events.rules import Event, EventType, event_id
from billing_kernel.metrics.rules import Aggregation, Metric, Position, Tally
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import Cost, PriceModel, Share

SECOND = timedelta(seconds=1)


class LineKind(StrEnum):
    BASE_FEE = "base_fee"
    PRORATION_CREDIT = "proration_credit"
    PRORATION_CHARGE = "proration_charge"
    OVERAGE = "overage"
    SEATS = "seats"
    ADJUSTMENT = "adjustment"
    DISCOUNT = "discount"
    CREDIT_APPLIED = "credit_applied"


FEE_KINDS = frozenset({LineKind.BASE_FEE, LineKind.PRORATION_CREDIT, LineKind.PRORATION_CHARGE})


@dataclass(frozen=True, slots=True)
class Subscription:
    """What an org is on from `since` until its next change: a plan at one version, and
    whether its billing status is billed."""

    since: datetime
    plan: Plan
    billable: bool


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    kind: LineKind
    description: str
    amount: Decimal
    """Rounded to cents; negative for a credit."""
    formula: str
    """How the amount was reached, with its numbers."""
    plan_slug: str
    plan_version: int
    metric: str | None = None
    quantity: int = 0
    """Usage lines: the units billed (beyond what is included); fee lines: the seconds."""
    unit_price: Decimal = ZERO
    unit_size: int = 1
    starts_at: datetime | None = None
    """Fee lines: the time the line covers, to the period's end."""
    adjusts: BillingPeriod | None = None
    """Adjustment lines: the earlier period whose late usage they bill."""
    coupon: str | None = None
    """Discount lines: the coupon's code."""
    dimension: str | None = None
    """Usage lines of a metric priced per value: the event property."""
    dimension_value: str | None = None
    """... and the value the line bills (None: every value not priced apart)."""


def whole_second(moment: datetime) -> datetime:
    """`moment` without its fraction of a second: the grain of proration."""
    return ensure_utc(moment).replace(microsecond=0)


def in_force(period: BillingPeriod, history: Sequence[Subscription]) -> list[Subscription]:
    """The subscriptions that bill in `period`, in order: the one in force at its start (if
    any) with `since` moved to the start, then each change inside it. `history` is in the
    order the changes were made; changes at one instant keep that order."""
    at_start: Subscription | None = None
    inside: list[Subscription] = []
    for sub in history:
        since = whole_second(sub.since)
        if since <= period.start:
            at_start = Subscription(period.start, sub.plan, sub.billable)
        elif since < period.end:
            inside.append(Subscription(since, sub.plan, sub.billable))
    inside.sort(key=lambda sub: sub.since)  # stable: one instant keeps its order
    return ([at_start] if at_start else []) + inside


def fee_lines(period: BillingPeriod, history: Sequence[Subscription]) -> list[InvoiceLine]:
    """The base fee and proration lines of `period` (see the module's rules)."""
    lines: list[InvoiceLine] = []
    before: Subscription | None = None
    for sub in in_force(period, history):
        if before is not None and _same_terms(before, sub):
            continue
        if sub.since == period.start:
            if sub.billable:
                lines.append(_fee(LineKind.BASE_FEE, period, sub, sub.plan, 1))
        else:
            if before is not None and before.billable:
                lines.append(_fee(LineKind.PRORATION_CREDIT, period, sub, before.plan, -1))
            if sub.billable:
                lines.append(_fee(LineKind.PRORATION_CHARGE, period, sub, sub.plan, 1))
        before = sub
    # A proration that rounds to nothing (a change in the period's last second) is left out.
    return [line for line in lines if line.amount or line.kind is LineKind.BASE_FEE]


def change_lines(
    period: BillingPeriod, history: Sequence[Subscription], change: Subscription
) -> list[InvoiceLine]:
    """The fee lines `change`, made after every change of `history`, adds to the period's
    invoice: what `fee_lines` gives with it, beyond what it gives without. A change at the
    period's first second replaces the plan the period starts on: its lines are then the
    lines it replaces, credited, and the period's new fee lines, so that they add up to
    what the change costs."""
    before = fee_lines(period, history)
    after = fee_lines(period, [*history, change])
    if after[: len(before)] == before:
        return after[len(before) :]
    return [_credited(line) for line in before if line not in after] + [
        line for line in after if line not in before
    ]


def _credited(line: InvoiceLine) -> InvoiceLine:
    """`line` taken back: a credit of its amount."""
    return replace(
        line,
        kind=LineKind.PRORATION_CREDIT,
        description=f"{line.description}, replaced",
        amount=-line.amount,
        formula=f"{money_text(line.amount)}, credited → {money_text(-line.amount)}",
    )


def _same_terms(a: Subscription, b: Subscription) -> bool:
    return (a.plan.slug, a.plan.version, a.billable) == (b.plan.slug, b.plan.version, b.billable)


def _fee(
    kind: LineKind, period: BillingPeriod, sub: Subscription, plan: Plan, sign: int
) -> InvoiceLine:
    seconds = (period.end - sub.since) // SECOND
    length = (period.end - period.start) // SECOND
    exact = plan.monthly_price * seconds / length
    amount = sign * round_money(exact)
    name = f"{plan.name} (v{plan.version})"
    when = sub.since.strftime("%Y-%m-%d %H:%M:%S UTC")
    description = {
        LineKind.BASE_FEE: f"{name}, {period.label}",
        LineKind.PRORATION_CREDIT: f"Unused time on {name} from {when}",
        LineKind.PRORATION_CHARGE: f"Remaining time on {name} from {when}",
    }[kind]
    formula = (
        f"{money_text(plan.monthly_price)}"
        if seconds == length
        else f"{money_text(plan.monthly_price)} x {seconds:,} s / {length:,} s"
        f" = {exact_text(exact)}"
    )
    return InvoiceLine(
        kind=kind,
        description=description,
        amount=amount,
        formula=f"{formula}{', credited' if sign < 0 else ''} → {money_text(amount)}",
        plan_slug=plan.slug,
        plan_version=plan.version,
        quantity=seconds,
        unit_price=plan.monthly_price,
        starts_at=sub.since,
    )


_LONG_DECIMAL = re.compile(r"= ([0-9][0-9,]*\.[0-9]{7,})")
FORMULA_PLACES = 4
"""How many decimal places a formula's intermediate figure shows people (the exact figure
is behind a disclosure on the page, in `explain` and `invoices show --exact`)."""


def formula_for_people(formula: str) -> str:
    """`formula` with an intermediate figure of more than FORMULA_PLACES decimal places
    rounded to them and marked approximate: "... = 45.86327919653524492 → 45.86" reads
    "... ≈ 45.8633 → 45.86". Anything else stays as it is."""

    def rounded(found: re.Match[str]) -> str:
        exact = Decimal(found.group(1).replace(",", ""))
        return f"≈ {exact.quantize(Decimal(1).scaleb(-FORMULA_PLACES), ROUND_HALF_UP):,}"

    return _LONG_DECIMAL.sub(rounded, formula)


def _priced(share: Share) -> tuple[Cost, str]:
    """What a share costs beyond what is included of it, and the arithmetic up to its exact
    amount: "(1,500 - 1,000) x 0.02 / 1,000" per unit; for the other models the units over,
    then the model's own arithmetic ("(1,500 - 1,000) = 500: 100 x 0.02 + 400 x 0.01")."""
    cost, price = share.cost(), share.price
    head = f"({share.used:,} - {share.included or 0:,})"
    if price.model is PriceModel.PER_UNIT:
        per = "" if price.unit_size == 1 else f" / {price.unit_size:,}"
        return cost, f"{head} x {money_text(price.unit_price)}{per}"
    return cost, f"{head} = {cost.units:,}: {cost.formula}"


def _named(metric: Metric, terms: PlanMetric, share: Share) -> str:
    """The metric's name, and for a metric priced per value the value a share is of:
    "Tokens (model gpt-5)", "Tokens (other model values)"."""
    if terms.dimension is None:
        return metric.name
    prop = terms.dimension.property
    value = f"other {prop} values" if share.value is None else f"{prop} {share.value}"
    return f"{metric.name} ({value})"


def _share_line(
    kind: LineKind,
    plan: Plan,
    metric: Metric,
    terms: PlanMetric,
    share: Share,
    text: tuple[str, Decimal, str],
) -> InvoiceLine:
    """A usage line of `share`, its `text` the description, amount and formula."""
    cost = share.cost()
    description, amount, formula = text
    return InvoiceLine(
        kind=kind,
        description=description,
        amount=amount,
        formula=formula,
        plan_slug=plan.slug,
        plan_version=plan.version,
        metric=metric.key,
        quantity=cost.units,
        unit_price=share.price.unit_price_at(cost.units),
        unit_size=share.price.unit_size,
        dimension=None if terms.dimension is None else terms.dimension.property,
        dimension_value=share.value,
    )


Split = Mapping[str, Mapping[str, int]]
"""By metric, the usage of each value its price lists (see `pricing.rules.shares`)."""


def usage_lines(
    plan: Plan,
    catalogue: Iterable[Metric],
    used: Mapping[str, int],
    included: Mapping[str, int | None],
    split: Split | None = None,
) -> list[InvoiceLine]:
    """One line per metric of the catalogue used beyond what is `included` (the org's limit,
    after its own terms; None: unlimited), priced by `plan`'s price for it; a metric priced
    per value, one per value priced apart (its usage in `split`) and one for the others,
    each used beyond what the included quantity leaves it. A price that charges nothing
    bills nothing."""
    lines = []
    for metric in catalogue:
        terms = plan.allowance(metric.key)
        limit = included.get(metric.key, terms.included_quantity)
        quantity = used.get(metric.key, 0)
        seats = metric.aggregation is Aggregation.SEATS
        by_value = (split or {}).get(metric.key, {})
        for share in terms.shares(quantity, by_value, limit):
            if share.over <= 0 or share.price.is_free:
                continue  # within what is included (or unlimited), or free
            cost, arithmetic = _priced(share)
            if terms.dimension is None:
                description = (
                    f"{metric.name}: {cost.units:,} {metric.unit} over the {limit:,} included"
                )
            else:
                covered = (
                    f"{share.included:,} of the {limit:,} included"
                    if share.included
                    else "none of the included"
                )
                description = (
                    f"{_named(metric, terms, share)}: {share.used:,} {metric.unit}, {covered}"
                )
            formula = f"{arithmetic} = {exact_text(cost.exact)} → {money_text(cost.amount)}"
            seats_text = " (the period's peak)" if seats else ""
            kind = LineKind.SEATS if seats else LineKind.OVERAGE
            text = (description + seats_text, cost.amount, formula)
            lines.append(_share_line(kind, plan, metric, terms, share, text))
    return lines


@dataclass(frozen=True, slots=True)
class LateUsage:
    """Usage of a period already invoiced that arrived after its invoice was made: it is
    billed by the org's next invoice, as an adjustment priced as the period was."""

    period: BillingPeriod
    metric: Metric
    billed: int
    """What the period's invoices billed of the metric so far."""
    late: int
    """What arrived since."""
    included: int | None
    """The org's limit the period was billed against (None: unlimited)."""
    plan: Plan
    """The plan that priced the period (the one in force at its end)."""
    billable: bool = True
    """Whether the period's usage was billed at all (the org was billable in it)."""
    billed_split: Mapping[str, int] = field(default_factory=dict)
    """A metric priced per value: what the invoices billed of each value priced apart."""
    late_split: Mapping[str, int] = field(default_factory=dict)
    """... and what arrived since of each."""


def adjustment_lines(late_usage: Iterable[LateUsage]) -> list[InvoiceLine]:
    """One `adjustment` line per period and metric (and value priced apart) with late usage
    that changes what the period costs: the cost of all its usage now, less the cost
    already billed, each rounded as the period's own line was, so the period is billed in
    all exactly what one invoice made after the last event would have billed."""
    lines = []
    for item in late_usage:
        if not item.billable:
            continue
        terms = item.plan.allowance(item.metric.key)
        total = item.billed + item.late
        split = {
            value: item.billed_split.get(value, 0) + item.late_split.get(value, 0)
            for value in {*item.billed_split, *item.late_split}
        }
        before = terms.shares(item.billed, item.billed_split, item.included)
        for index, now in enumerate(terms.shares(total, split, item.included)):
            was = before[index]  # the same value's share: shares come in the price's order
            billed, due = was.cost().amount, now.cost().amount
            amount = due - billed
            if not amount:
                continue  # unlimited, within what is included, or rounding alike
            cost, arithmetic = _priced(now)
            if terms.dimension is None:
                received = item.late
                description = (
                    f"{item.metric.name} for {item.period.label}, received after it was "
                    f"invoiced: {received:,} {item.metric.unit}"
                )
            else:  # usage of one value may move included units away from another
                received = now.over - was.over
                description = (
                    f"{_named(item.metric, terms, now)} for {item.period.label}, with usage "
                    f"received after it was invoiced: {now.over:,} {item.metric.unit} over "
                    f"the included, {was.over:,} before"
                )
            formula = (
                f"{arithmetic} = {exact_text(cost.exact)}"
                f" → {money_text(due)}, less {money_text(billed)} billed"
                f" → {money_text(amount)}"
            )
            line = _share_line(
                LineKind.ADJUSTMENT,
                item.plan,
                item.metric,
                terms,
                now,
                (description, amount, formula),
            )
            lines.append(replace(line, quantity=received, adjusts=item.period))
    return lines


def closes_at(period: BillingPeriod, grace: timedelta) -> datetime:
    """When a period closes: `grace` after it ends (BILLING_LATE_EVENT_GRACE_HOURS). Until
    then its late events still count in it; after, in an adjustment on the next invoice."""
    return period.end + grace


def require_closed(period: BillingPeriod, grace: timedelta, now: datetime, why: str = "") -> None:
    """PeriodNotClosed, saying when it closes (and `why` that matters), before `period`
    closes at `now`."""
    if now < closes_at(period, grace):
        raise PeriodNotClosed(
            f"{period.label} closes at {closes_at(period, grace):%Y-%m-%d %H:%M} UTC "
            f"(BILLING_LATE_EVENT_GRACE_HOURS after it ends){why}",
            period=period.label,
        )


def credit_applied_line(applied: Decimal, held: Decimal, plan: Plan) -> InvoiceLine:
    """The line that takes `applied` off an invoice, drawn from the `held` balance the org
    had when it was made (credit notes on invoices it paid outside Stripe)."""
    if not ZERO < applied <= held:
        raise ValueError(f"cannot apply {applied} of a balance of {held}")
    return InvoiceLine(
        kind=LineKind.CREDIT_APPLIED,
        description="Credit balance applied",
        amount=-applied,
        formula=f"{money_text(applied)} of the {money_text(held)} held → {money_text(-applied)}",
        plan_slug=plan.slug,
        plan_version=plan.version,
    )


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """An org's invoice for one period, as its lines say."""

    org_id: str
    period: BillingPeriod
    currency: str
    lines: tuple[InvoiceLine, ...]
    plan: Plan
    """The plan in force at the period's end: it priced the usage."""
    bills_usage: bool = True
    """Whether the org was billable for any of the period, so that its usage is billed."""

    @property
    def subtotal(self) -> Decimal:
        return sum((line.amount for line in self.lines), ZERO)

    @property
    def total(self) -> Decimal:
        """The subtotal: the kernel adds no tax."""
        return self.subtotal

    def out_of_bounds(self) -> str | None:
        """Why the invoice cannot be stored, if an amount of it is beyond MAX_AMOUNT: the
        first such line, or the total; None when every amount is within bounds."""
        most = money_text(MAX_AMOUNT, thousands=True)
        for number, line in enumerate(self.lines, 1):
            if not within_bounds(line.amount):
                return (
                    f"line {number} ({line.description}) comes to "
                    f"{money_text(line.amount, thousands=True)} {self.currency}, beyond the "
                    f"{most} an amount may be"
                )
        if not within_bounds(self.total):
            return (
                f"the total comes to {money_text(self.total, thousands=True)} {self.currency}, "
                f"beyond the {most} an amount may be"
            )
        return None


def draft_invoice(
    org_id: str,
    period: BillingPeriod,
    history: Sequence[Subscription],
    catalogue: Iterable[Metric],
    used: Mapping[str, int],
    included: Mapping[str, int | None],
    late_usage: Sequence[LateUsage] = (),
    coupons: Sequence[Coupon] = (),
    split: Split | None = None,
) -> InvoiceDraft:
    """The org's invoice for `period`: its fee lines, then, if it was billable for any of
    the period, its usage priced by the plan in force at the period's end, then the
    adjustments for `late_usage` of earlier periods, then what `coupons` (those covering the
    period, in the order they were applied to the org) take off them. Every plan it was on
    in the period is in one currency (CurrencyChange otherwise: the kernel refuses a change
    of currency within a billed period)."""
    subs = in_force(period, history)
    if not subs:
        raise ValueError(f"org {org_id!r} had no plan in {period.label}")
    at_end = subs[-1].plan
    currencies = {sub.plan.currency for sub in subs if sub.billable} | {at_end.currency}
    if len(currencies) > 1:  # history from before the kernel held a month to one currency
        raise CurrencyChange(
            f"org {org_id!r} was billed in {', '.join(sorted(currencies))} in {period.label}: "
            "its invoice cannot be made in one currency",
            org_id=org_id,
        )
    lines = fee_lines(period, history)
    bills_usage = any(sub.billable for sub in subs)
    if bills_usage:
        lines += usage_lines(at_end, catalogue, used, included, split)
    lines += adjustment_lines(late_usage)
    lines += discount_lines(lines, coupons, at_end)
    return InvoiceDraft(org_id, period, at_end.currency, tuple(lines), at_end, bills_usage)


def discount_lines(
    lines: Sequence[InvoiceLine], coupons: Sequence[Coupon], plan: Plan
) -> list[InvoiceLine]:
    """One `discount` line per coupon that takes something off `lines` (`discounts.rules`),
    in `plan`'s currency."""
    return [
        InvoiceLine(
            kind=LineKind.DISCOUNT,
            description=f"{found.coupon.name} ({found.coupon.code}): {found.coupon.off}",
            amount=-found.amount,
            formula=found.formula,
            plan_slug=plan.slug,
            plan_version=plan.version,
            coupon=found.coupon.code,
        )
        for found in discounts([_discountable(line) for line in lines], coupons, plan.currency)
    ]


def _discountable(line: InvoiceLine) -> Discountable:
    target = FEE if line.kind in FEE_KINDS else line.metric  # only usage lines name one
    return Discountable(target, line.plan_slug, line.amount)


def usage_of(
    period: BillingPeriod,
    billed: Mapping[tuple[date, str], Tally],
    catalogue: Mapping[str, Metric],
) -> dict[str, int]:
    """The usage of `period` by metric that lines `billed` (by period and metric) come to:
    their sum, a max's highest, or a latest's last (`Metric.period_usage`)."""
    return {
        metric: catalogue[metric].period_usage(lines) if metric in catalogue else lines.quantity
        for (start, metric), lines in billed.items()
        if start == period.key
    }


@dataclass(frozen=True, slots=True)
class StoredLine:
    number: int
    kind: str
    description: str
    amount: Decimal
    formula: str
    plan_slug: str
    plan_version: int
    period_start: date
    metric: str | None
    quantity: int
    unit_price: Decimal
    unit_size: int
    starts_at: datetime | None
    coupon: str | None = None
    dimension: str | None = None
    dimension_value: str | None = None


@dataclass(frozen=True, slots=True)
class StoredUsage:
    period_start: date
    metric: str
    quantity: int
    events: int
    included: int | None
    last_at: Position | None = None
    """For a latest: where the last line it billed stands (the next late one must stand
    after it to change the figure)."""
    split: Mapping[str, int] | None = None
    """A metric priced per value: what it billed of each value priced apart."""


@dataclass(frozen=True, slots=True)
class StoredInvoice:
    invoice_id: str
    org_id: str
    period_start: date
    number: str
    sequence: int
    status: str
    currency: str
    subtotal: Decimal
    total: Decimal
    plan_slug: str
    plan_version: int
    bills_usage: bool
    issued_at: datetime
    paid_at: datetime | None
    voided_at: datetime | None
    void_reason: str | None
    replaces: str | None
    paid_by: str | None = None
    """The payment that paid it; None when marked paid by hand (or not paid)."""
    credited: Decimal = Decimal(0)
    """What its credit notes gave back, in all (a paid invoice is corrected by them)."""
    lines: tuple[StoredLine, ...] = ()
    usage: tuple[StoredUsage, ...] = ()

    @property
    def balance_applied(self) -> Decimal:
        """The credit balance it drew (its `credit_applied` lines), as a positive sum."""
        return -sum(
            (line.amount for line in self.lines if line.kind == LineKind.CREDIT_APPLIED), ZERO
        )


def close_failed_event(org_id: str, period: date, reason: str, now: datetime) -> Event:
    """The event that an org's invoice for `period` could not be made, and why: the
    operators' (so only deployment-wide endpoints get it, never the org's own); one per org,
    period and reason however often the closer tries again."""
    month = BillingPeriod.starting(period)
    return Event(
        event_id=event_id(EventType.INVOICE_CLOSE_FAILED, org_id, period.isoformat(), reason),
        event_type=EventType.INVOICE_CLOSE_FAILED,
        org_id=org_id,
        created_at=now,
        data={
            "org_id": org_id,
            "period": {
                "start": month.start.date().isoformat(),
                "end": month.end.date().isoformat(),
            },
            "reason": reason,
        },
    )


@dataclass(frozen=True, slots=True)
class Estimate:
    """What an org's month comes to, one figure for every reader: the upcoming invoice's
    total for the current month, the invoice's for a month invoiced."""

    total: Decimal
    invoice: StoredInvoice | None = None
    """The month's finalized invoice, when it has one."""
    notes: tuple[str, ...] = ()
    """Why `total` is not the plan's monthly price plus the overage, when it is not."""


def estimate_notes(draft: InvoiceDraft, price: Decimal, overage: Decimal) -> tuple[str, ...]:
    """Why `draft`'s total differs from the plan's monthly `price` plus `overage` (the
    summary's sum of usage lines), in words; none when it does not differ."""
    if draft.total == price + overage:
        return ()
    kinds = {line.kind for line in draft.lines}
    fees = sum((line.amount for line in draft.lines if line.kind is LineKind.BASE_FEE), ZERO)
    notes = []
    if not draft.bills_usage:
        notes.append("not billed: the org has been in trial (or canceled) all month so far")
    elif kinds & {LineKind.PRORATION_CHARGE, LineKind.PRORATION_CREDIT}:
        notes.append(
            "the subscription changed this month (its plan or status): its fees are prorated "
            "to the second"
        )
    elif fees != price:
        notes.append("the plan's fee covers only the part of the month it is billed for")
    if LineKind.ADJUSTMENT in kinds:
        notes.append("it adjusts usage of an earlier month that arrived late")
    return tuple(notes) or ("the upcoming invoice's lines say how",)


@dataclass(frozen=True, slots=True)
class BacktestRow:
    """One org's invoice for a closed month as it was made, and as a draft of its plan would
    have made it: each before any credit balance it drew."""

    org_id: str
    invoice_number: str
    plan_version: int
    """The version of the plan the invoice was made by."""
    invoiced: Decimal
    draft: InvoiceDraft

    @property
    def difference(self) -> Decimal:
        """What the draft would have billed more (less, when negative)."""
        return self.draft.total - self.invoiced


@dataclass(frozen=True, slots=True)
class Backtest:
    """A draft of a plan priced against a closed month's recorded usage: nothing written."""

    plan_slug: str
    period: BillingPeriod
    currency: str
    rows: tuple[BacktestRow, ...]

    @property
    def invoiced(self) -> Decimal:
        return sum((row.invoiced for row in self.rows), ZERO)

    @property
    def drafted(self) -> Decimal:
        return sum((row.draft.total for row in self.rows), ZERO)

    @property
    def difference(self) -> Decimal:
        return self.drafted - self.invoiced
