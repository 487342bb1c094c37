"""Discounts' pure rules: a coupon as an operator defines it (checked whole, the wrong part
named), whether it may still be applied to an org, which of an org's periods it covers, and
what it takes off an invoice.

A coupon takes a percentage or a fixed amount (in one currency) off the lines it applies to:
the plan fee lines (`fee`), a metric's usage lines (the metric's key, adjustments of earlier
months included), or every line; optionally only lines of some plans. It lasts `once` (the
period it was applied in), `repeating` (that period and the N - 1 after it) or `forever`.

What a discount takes is bounded by what its lines come to, net of their credits, so it
never takes them below zero. An org's discounts apply in the order they were applied to it,
each to what the ones before it left; a percentage is rounded once, half up, to cents, and
shared between its lines in cents (each its share rounded down, the cents left over to the
lines whose share lost most); a fixed amount is taken from the lines in invoice order. The
credit balance is drawn after every discount (`invoices.rules.credit_applied_line`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from billing_kernel.common.money import CENT, MAX_AMOUNT, ZERO, exact_text, money_text, round_money
from billing_kernel.common.periods import BillingPeriod, ensure_utc
from billing_kernel.errors import InvalidInput
from billing_kernel.pricing.rules import check_amount

CODE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A coupon's code: 1 to 64 letters, digits, `_` and `-`, starting with a letter or digit."""
FEE = "fee"
"""The target that names the plan fee lines (base fee and proration)."""
MAX_PERIODS = 120
"""The most periods a repeating coupon lasts: ten years of months."""
MAX_TARGETS = 50
HUNDRED = Decimal(100)


class Kind(StrEnum):
    PERCENT = "percent"
    AMOUNT = "amount"


class Duration(StrEnum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


@dataclass(frozen=True, slots=True)
class Coupon:
    """A discount an operator may apply to orgs."""

    code: str
    name: str
    kind: Kind
    value: Decimal
    """A percentage (above 0, at most 100) or an amount (above 0) in `currency`."""
    duration: Duration
    currency: str | None = None
    """An amount's currency; None for a percentage (it applies in any)."""
    periods: int | None = None
    """How many periods a repeating coupon covers; None otherwise."""
    plans: tuple[str, ...] | None = None
    """Only lines of these plans (by slug); None: any plan's."""
    applies_to: tuple[str, ...] | None = None
    """Only these lines: `fee` and metric keys; None: every line."""
    max_redemptions: int | None = None
    """How many orgs it may be applied to in all; None: no limit."""
    redeem_by: datetime | None = None
    """The last moment it may be applied; None: no end."""
    created_at: datetime | None = None
    archived_at: datetime | None = None
    """When it stopped being applicable to more orgs (those it was applied to keep it)."""
    redemptions: int = 0
    """How many orgs it has been applied to."""

    @property
    def off(self) -> str:
        """What it takes off, in words: `20% off`, `5.00 USD off`."""
        if self.kind is Kind.PERCENT:
            return f"{exact_text(self.value)}% off"
        return f"{money_text(self.value)} {self.currency} off"

    @property
    def lasts(self) -> str:
        """How long it lasts, in words."""
        if self.duration is Duration.REPEATING:
            n = self.periods or 0
            return f"for {n} month{'s' if n != 1 else ''}"
        return "for one month" if self.duration is Duration.ONCE else "forever"

    @property
    def on(self) -> str:
        """The lines it takes from, in words (`, on the plan fee, tokens`); none for all."""
        if self.applies_to is None:
            return ""
        return ", on " + ", ".join("the plan fee" if t == FEE else t for t in self.applies_to)

    def describe(self) -> str:
        """The coupon in words: `20% off for 3 months, on tokens`."""
        text = f"{self.off} {self.lasts}{self.on}"
        if self.plans is not None:
            text += f" ({', '.join(self.plans)} only)"
        return text

    def covers(self, redeemed_at: datetime, period: BillingPeriod) -> bool:
        """Whether, applied at `redeemed_at`, it discounts the invoice of `period`: the
        period it was applied in and, repeating, the `periods - 1` after it; forever, every
        one from it."""
        first = BillingPeriod.containing(redeemed_at).key
        if period.key < first:
            return False
        return self.months is None or _months_between(first, period.key) < self.months

    @property
    def months(self) -> int | None:
        """How many months it covers; None: every one from the first."""
        if self.duration is Duration.FOREVER:
            return None
        return 1 if self.duration is Duration.ONCE else (self.periods or 0)

    def why_not_redeemable(self, now: datetime) -> str | None:
        """Why it may not be applied to another org at `now`; None when it may."""
        if self.archived_at is not None:
            return f"coupon {self.code} is archived"
        if self.redeem_by is not None and ensure_utc(now) > self.redeem_by:
            return f"coupon {self.code} could be applied until {self.redeem_by.isoformat()}"
        if self.max_redemptions is not None and self.redemptions >= self.max_redemptions:
            return (
                f"coupon {self.code} has been applied to {self.redemptions} orgs, "
                f"its limit of {self.max_redemptions}"
            )
        return None

    def terms(self) -> tuple[object, ...]:
        """What makes it the coupon it is: two with the same code and terms are one."""
        return (
            self.code,
            self.name,
            self.kind,
            self.value,
            self.currency,
            self.duration,
            self.periods,
            self.plans,
            self.applies_to,
            self.max_redemptions,
            self.redeem_by,
        )


@dataclass(frozen=True, slots=True)
class Redemption:
    """A coupon applied to an org."""

    org_id: str
    coupon: Coupon
    redeemed_at: datetime
    removed_at: datetime | None = None

    def discounts(self, period: BillingPeriod, at: datetime) -> bool:
        """Whether it discounts the invoice of `period` made at `at`: applied before then,
        not removed before then, and covering the period. An application or a removal at the
        very instant of an invoice counts as after it, so that the invoice computed again
        from these times is the one that was made, whichever came first."""
        at = ensure_utc(at)
        return (
            self.redeemed_at < at
            and (self.removed_at is None or at <= self.removed_at)
            and self.coupon.covers(self.redeemed_at, period)
        )

    @property
    def last_month(self) -> date | None:
        """The first day of the last month it covers (for a count of none, the month before
        the first); None for one that lasts forever."""
        count = self.coupon.months
        if count is None:
            return None
        first = BillingPeriod.containing(self.redeemed_at).key
        months = first.year * 12 + first.month - 1 + count - 1
        return date(months // 12, months % 12 + 1, 1)


def in_effect(
    redemptions: Sequence[Redemption], period: BillingPeriod, at: datetime
) -> list[Coupon]:
    """The coupons that discount the invoice of `period` made at `at`, in the order they
    were applied (then by code)."""
    ordered = sorted(redemptions, key=lambda r: (r.redeemed_at, r.coupon.code))
    return [r.coupon for r in ordered if r.discounts(period, at)]


def _months_between(first: date, later: date) -> int:
    return (later.year - first.year) * 12 + later.month - first.month


def check_coupon(coupon: Coupon) -> Coupon:
    """A coupon as an operator defines it, checked whole: InvalidInput naming the first part
    that is wrong."""
    if not CODE_PATTERN.fullmatch(coupon.code):
        raise InvalidInput(
            "code must be 1 to 64 letters, digits, _ and -, starting with a letter or digit",
            field="code",
        )
    if not coupon.name.strip() or len(coupon.name) > 200:
        raise InvalidInput("name must be 1 to 200 characters, not only spaces", field="name")
    if coupon.kind is Kind.PERCENT:
        check_amount(coupon.value, 2, HUNDRED, "percent_off", above_zero=True)
        if coupon.currency is not None:
            raise InvalidInput(
                "currency is for an amount off: a percentage applies in any currency",
                field="currency",
            )
    else:
        check_amount(coupon.value, 2, MAX_AMOUNT, "amount_off", above_zero=True)
        if coupon.currency is None or not re.fullmatch(r"[A-Z]{3}", coupon.currency):
            raise InvalidInput(
                "an amount off needs its currency, a three-letter code such as USD",
                field="currency",
            )
    if coupon.duration is Duration.REPEATING:
        if coupon.periods is None or not 1 <= coupon.periods <= MAX_PERIODS:
            raise InvalidInput(
                f"a repeating coupon needs periods, from 1 to {MAX_PERIODS}", field="periods"
            )
    elif coupon.periods is not None:
        raise InvalidInput(
            f"periods is for a repeating coupon, not one that lasts {coupon.duration.value}",
            field="periods",
        )
    _check_list(coupon.plans, "plans")
    _check_list(coupon.applies_to, "applies_to")
    if coupon.max_redemptions is not None and not 1 <= coupon.max_redemptions <= 2**31 - 1:
        raise InvalidInput(
            "max_redemptions must be a whole number from 1 to 2147483647",
            field="max_redemptions",
        )
    return coupon


def _check_list(values: tuple[str, ...] | None, field: str) -> None:
    if values is None:
        return
    if not 1 <= len(values) <= MAX_TARGETS:
        raise InvalidInput(
            f"{field} must name 1 to {MAX_TARGETS} (leave it out for all)", field=field
        )
    for n, value in enumerate(values):
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", value):
            raise InvalidInput(
                f"{field}[{n}] must be a lowercase key of 1 to 64 letters, digits, _ and -",
                field=f"{field}[{n}]",
            )
    if len(set(values)) != len(values):
        raise InvalidInput(f"{field} names one twice", field=field)


@dataclass(frozen=True, slots=True)
class Discountable:
    """An invoice line as discounts see it: what it is (`fee` or a metric's key; None for
    a line no coupon takes from), whose plan, and its amount."""

    target: str | None
    plan_slug: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Discount:
    """What one coupon takes off one invoice, with the arithmetic its line shows."""

    coupon: Coupon
    amount: Decimal
    """Positive, in cents."""
    formula: str


def applies(coupon: Coupon, target: str | None, plan_slug: str) -> bool:
    """Whether `coupon` takes from a line of `target` (`fee`, a metric's key; None: a line
    no coupon takes from) billed by the plan `plan_slug`."""
    if target is None:
        return False
    if coupon.plans is not None and plan_slug not in coupon.plans:
        return False
    return coupon.applies_to is None or target in coupon.applies_to


def discounts(
    lines: Sequence[Discountable], coupons: Sequence[Coupon], currency: str
) -> list[Discount]:
    """What each of `coupons` (in the order they apply) takes off an invoice in `currency`
    made of `lines`: nothing for an amount in another currency or where its lines come to
    nothing. The lines a coupon applies to are taken net, by target and plan, so a credit
    nets with its charge; what each group has left after one coupon is what the next sees."""
    groups: dict[tuple[str, str], Decimal] = {}
    for line in lines:
        if line.target is not None:
            key = (line.target, line.plan_slug)
            groups[key] = groups.get(key, ZERO) + line.amount
    left = {key: max(amount, ZERO) for key, amount in groups.items()}
    found: list[Discount] = []
    for coupon in coupons:
        if coupon.kind is Kind.AMOUNT and coupon.currency != currency:
            continue
        mine = [key for key in left if applies(coupon, *key)]
        base = sum((left[key] for key in mine), ZERO)
        if coupon.kind is Kind.PERCENT:
            rate = coupon.value / HUNDRED
            amount = round_money(base * rate)
            shares = _shared(amount, [(key, left[key] * rate) for key in mine])
            exact = exact_text(base * rate)
            formula = f"{exact_text(coupon.value)}% of {money_text(base)} = {exact}"
        else:
            amount = min(coupon.value, base).quantize(CENT)
            shares = _taken_in_order(amount, [(key, left[key]) for key in mine])
            formula = (
                f"{money_text(coupon.value)} off"
                if amount == coupon.value
                else f"{money_text(coupon.value)} off, no more than the {money_text(base)} "
                "it applies to"
            )
        if amount <= 0:
            continue
        for key, taken in shares.items():
            left[key] -= taken
        found.append(Discount(coupon, amount, f"{formula} → {money_text(-amount)}"))
    return found


def _shared(
    amount: Decimal, exact: list[tuple[tuple[str, str], Decimal]]
) -> dict[tuple[str, str], Decimal]:
    """`amount` (cents) shared between groups in proportion to their `exact` shares: each
    its share rounded down to cents, then a cent each to those that lost most by it (in
    order among equals) until `amount` is shared."""
    shares = {key: share.quantize(CENT, rounding=ROUND_DOWN) for key, share in exact}
    rest = amount - sum(shares.values(), ZERO)
    by_loss = sorted(range(len(exact)), key=lambda i: -(exact[i][1] - shares[exact[i][0]]))
    for i in by_loss:
        if rest <= 0:
            break
        shares[exact[i][0]] += CENT
        rest -= CENT
    return shares


def _taken_in_order(
    amount: Decimal, left: list[tuple[tuple[str, str], Decimal]]
) -> dict[tuple[str, str], Decimal]:
    """`amount` taken from the groups in order, from each as much as it has left."""
    shares: dict[tuple[str, str], Decimal] = {}
    rest = amount
    for key, has in left:
        take = min(has, rest)
        shares[key] = take
        rest -= take
    return shares
