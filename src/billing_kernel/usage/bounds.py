"""The bound on what an org's month may come to. An invoice's amounts are bounded
(`common.money.MAX_AMOUNT`, what their columns hold): a write that would take an org's
month beyond it is refused, event by event, rather than accepted and left unbillable. A
write's counters come back with their charge at the org's terms (`Charge`); a month near
the bound is priced in full (`months_to_price`, `month_total`) and judged
(`beyond_bounds`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from billing_kernel.alerts.rules import Reading
from billing_kernel.common.keys import CounterKey, MonthKey
from billing_kernel.common.money import (
    MAX_AMOUNT,
    PRICE_TERMS_APART,
    ZERO,
    money_text,
    round_money,
    within_bounds,
)
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import AmountOutOfBounds
from billing_kernel.pricing.rules import PriceModel, most_cost, stored_dimension, stored_price

NEAR_BOUND = round_money(MAX_AMOUNT / 1024)
"""976,562,500.00, a 1,024th of the bound. When the counters a write touched of one org's
month come to this much between them, the whole month is priced (`month_total`) and judged,
and so is every later write to it. A month could still pass the bound through counters of
over 1,024 metrics each below it, through terms changed since its writes (a plan's price,
the org's limit), or through a write made while another's first pricing of the month had
not committed: the closer reports those."""


@dataclass(frozen=True, slots=True)
class Charge:
    """What a counter comes to at its org's terms as they stand: its usage beyond what is
    included (the org's limit: its override's, else its plan's), priced by its plan's
    overage terms, as an invoice made now would bill it."""

    used: int
    included: int | None
    """None: unlimited, nothing is charged."""
    unit_price: Decimal | None
    """None: the org's plan has no terms for the metric, nothing is charged."""
    unit_size: int | None
    model: str | None = None
    """The plan's price model (None: per_unit)."""
    tiers: str | None = None
    """graduated and volume: the tiers as stored (`pricing.rules.tiers_text`)."""
    dimension: str | None = None
    """A dimension's prices as stored (`pricing.rules.dimension_text`): the split of the
    usage among them is not known as it is written, so the charge is the most it could come
    to, every unit at the dearest of the prices (`pricing.rules.most_cost`)."""

    @property
    def amount(self) -> Decimal:
        if self.included is None or self.unit_price is None or self.unit_size is None:
            return ZERO
        price = stored_price(
            self.model or PriceModel.PER_UNIT, self.unit_price, self.unit_size, self.tiers
        )
        if self.dimension is not None:
            prices = (price, *stored_dimension(self.dimension))
            return most_cost(prices, self.used - self.included)
        return price.cost(self.used - self.included).amount


def charge_of(used: int, included: int | None, terms: str | None) -> Charge:
    """A counter's charge from its plan's price as `db.limits.price_terms_of` reads it in
    one text: unit price, unit size, model and tiers, separated by spaces, then apart a
    dimension's prices (None: no terms)."""
    if terms is None:
        return Charge(used, included, None, None)
    head, _, dimension = terms.partition(PRICE_TERMS_APART)
    unit_price, unit_size, model, tiers = head.split(" ", 3)
    return Charge(
        used, included, Decimal(unit_price), int(unit_size), model, tiers or None, dimension or None
    )


@dataclass(frozen=True, slots=True)
class Moved:
    """A counter as a batch's write left it: what its alerts and its charge are judged on,
    and whether its month is priced in full on every write (it came to NEAR_BOUND)."""

    reading: Reading
    charge: Charge
    in_full: bool = False


def months_to_price(moved: Mapping[CounterKey, Moved]) -> set[MonthKey]:
    """The org months a write must price in full, of those whose counters it `moved`: those
    priced in full on every write, and those whose counters it moved come to NEAR_BOUND or
    more between them."""
    touched: dict[MonthKey, Decimal] = {}
    in_full = set()
    for (org_id, period_start, _), counter in moved.items():
        month = MonthKey(org_id, period_start)
        touched[month] = touched.get(month, ZERO) + counter.charge.amount
        if counter.in_full:
            in_full.add(month)
    return in_full | {month for month, amount in touched.items() if amount >= NEAR_BOUND}


def month_total(fee: Decimal | None, charges: Iterable[Charge]) -> Decimal:
    """What an org's month comes to at its terms as they stand: its plan's fee (None: it
    has no plan) and every counter's charge."""
    total = fee or ZERO
    for charge in charges:
        total += charge.amount
    return total


def beyond_bounds(org_id: str, period_start: date, total: Decimal) -> AmountOutOfBounds | None:
    """Why an event that takes the org's month to `total` is refused, if that is beyond
    MAX_AMOUNT; None when within."""
    if within_bounds(total):
        return None
    period = BillingPeriod.starting(period_start)
    return AmountOutOfBounds(
        f"with this event, the invoice of org {org_id!r} for {period.label} would come to "
        f"{money_text(total, thousands=True)} at its terms now, beyond the "
        f"{money_text(MAX_AMOUNT, thousands=True)} an amount may be; it was not counted",
        org_id=org_id,
        period=period.label,
    )
