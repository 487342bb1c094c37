"""Pricing: what the units of a metric beyond those included cost by a price model, worked
out in one place, each cost with the formula its invoice line shows. Pure: Decimal in,
Decimal out, exact; the line that bills a cost rounds it once (`common.money.round_money`),
never tier by tier.

A price applies to the units beyond what is included (the plan's included quantity, or the
org's own limit): included units are free, and the first tier starts at the first unit
beyond them. Every model charges nothing for no unit.

- `per_unit`: `unit_price` per block of `unit_size` units, a partial block charged
  proportionally: 1,500 units at 0.02 per 1,000 cost 0.03.
- `graduated`: each unit priced by the tier it falls in (`unit_price` per `unit_size` units,
  proportionally), and each tier it reaches adds its `flat_fee`.
- `volume`: every unit priced by the tier the whole quantity reaches, plus that tier's
  `flat_fee`.
- `package`: `unit_price` per block of `unit_size` units, a partial block charged as a whole
  one: 1,500 units at 5.00 per 1,000 cost 10.00.

A tier's `up_to` is the last unit it prices, counted from the first unit beyond the
included ones; the last tier has none (it prices every unit after). Tiers are contiguous by
construction: each starts after the one before it ends.

A price may depend on the value of one event property (a `Dimension`: `model`): each value
listed has a price of its own, every other value (and an event without the property) the
metric's price. Each value's units are priced apart, by their own model and tiers (`shares`).
The included quantity is the metric's, shared: it covers the listed values in the order the
plan lists them, then the other values. An operator who lists the dearest value first gives
the included units where they are worth most.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from billing_kernel.common.money import money_text, round_money
from billing_kernel.common.validation import validate_id, validate_property_name
from billing_kernel.errors import InvalidInput

MAX_UNIT_PRICE = Decimal("999999999999.999999")
"""The most a unit price may be (NUMERIC(18,6))."""
MAX_FLAT_FEE = Decimal("9999999999.99")
"""The most a tier's flat fee may be (NUMERIC(12,2))."""
MAX_UNIT_SIZE = 10**12
MAX_TIERS = 20
MAX_UP_TO = 10**15
"""The most units a tier may end at (a metric's counter is a 64-bit integer)."""
MAX_DIMENSION_PRICES = 20
MAX_VALUE_LENGTH = 200


class PriceModel(StrEnum):
    PER_UNIT = "per_unit"
    GRADUATED = "graduated"
    VOLUME = "volume"
    PACKAGE = "package"


TIERED = frozenset({PriceModel.GRADUATED, PriceModel.VOLUME})


@dataclass(frozen=True, slots=True)
class Tier:
    up_to: int | None
    """The last unit the tier prices (None: every unit after the tier before)."""
    unit_price: Decimal
    """Per the price's `unit_size` units, charged proportionally."""
    flat_fee: Decimal = Decimal(0)
    """Added once when usage reaches the tier (graduated: each tier reached; volume: the
    tier the whole quantity reaches)."""


@dataclass(frozen=True, slots=True)
class Cost:
    """What some units cost: exact (rounded by the line that bills it), and how."""

    units: int
    exact: Decimal
    formula: str
    """The arithmetic that gives `exact`, for the invoice line ("" for no unit)."""

    @property
    def amount(self) -> Decimal:
        """What a line billing it alone charges: `exact` rounded once, to cents."""
        return round_money(self.exact)


NOTHING = Cost(0, Decimal(0), "")


@dataclass(frozen=True, slots=True)
class Price:
    """How a plan charges for the units of a metric beyond those included."""

    model: PriceModel = PriceModel.PER_UNIT
    unit_price: Decimal = Decimal(0)
    """per_unit and package: the price of a block of `unit_size` units."""
    unit_size: int = 1
    tiers: tuple[Tier, ...] = ()
    """graduated and volume: the tiers, in order, the last open-ended."""

    def cost(self, units: int) -> Cost:
        """What `units` units beyond the included ones cost (nothing for none)."""
        if units <= 0:
            return NOTHING
        if self.model is PriceModel.PER_UNIT:
            return Cost(
                units, self._part(units, self.unit_price), self._each(units, self.unit_price)
            )
        if self.model is PriceModel.PACKAGE:
            blocks = -(-units // self.unit_size)
            formula = (
                f"⌈{units:,} / {self.unit_size:,}⌉ = {blocks:,} x {money_text(self.unit_price)}"
            )
            return Cost(units, blocks * self.unit_price, formula)
        if self.model is PriceModel.VOLUME:
            tier = self.tiers[self.tier_reached(units)]
            exact = self._part(units, tier.unit_price) + tier.flat_fee
            return Cost(units, exact, self._each(units, tier.unit_price) + _fee(tier.flat_fee))
        exact, parts = Decimal(0), []
        for start, end, tier in self._spans():
            if units <= start:
                break
            inside = min(units, end) - start
            exact += self._part(inside, tier.unit_price) + tier.flat_fee
            parts.append(self._each(inside, tier.unit_price) + _fee(tier.flat_fee))
        return Cost(units, exact, " + ".join(parts))

    @property
    def is_free(self) -> bool:
        """Whether no quantity costs anything (every price and fee is zero)."""
        return not self.unit_price and not any(t.unit_price or t.flat_fee for t in self.tiers)

    def unit_price_at(self, units: int) -> Decimal:
        """The price per `unit_size` units that `units` units are billed at: the price's
        own, or for tiers the price of the tier `units` reach (graduated: of the last units;
        the formula shows each tier's)."""
        if self.model in TIERED:
            return self.tiers[self.tier_reached(units)].unit_price
        return self.unit_price

    def describe(
        self,
        amount: Callable[[Decimal], str] = money_text,
        units: Callable[[int], str] = "{:,}".format,
    ) -> str:
        """The price in a few words, amounts written by `amount` and where tiers end by
        `units`: "0.02 per 1,000", "0.25 each", "5.00 per 1,000, a part charged whole",
        "graduated: 0.02 per 1,000 up to 100,000; 0.01 per 1,000 beyond", "volume: all at
        0.02 + 5.00 up to 100; ..."."""
        head, *tiers = self.described(amount, units)
        return f"{head} {'; '.join(tiers)}" if tiers else head

    def described(
        self,
        amount: Callable[[Decimal], str] = money_text,
        units: Callable[[int], str] = "{:,}".format,
    ) -> list[str]:
        """`describe` in parts: the price alone ("0.02 per 1,000"), or a tiered price's
        model ("graduated:") followed by each tier ("0.02 per 1,000 up to 100,000", "0.01
        per 1,000 beyond"; volume's first "all at ...")."""
        per = " each" if self.unit_size == 1 else f" per {self.unit_size:,}"
        if self.model is PriceModel.PER_UNIT:
            return [f"{amount(self.unit_price)}{per}"]
        if self.model is PriceModel.PACKAGE:
            return [f"{amount(self.unit_price)}{per}, a part charged whole"]
        parts = [
            f"{amount(t.unit_price)}{per}"
            + (f" + {amount(t.flat_fee)}" if t.flat_fee else "")
            + (" beyond" if t.up_to is None else f" up to {units(t.up_to)}")
            for t in self.tiers
        ]
        if self.model is PriceModel.VOLUME:
            parts[0] = f"all at {parts[0]}"
        return [f"{self.model}:", *parts]

    def tier_reached(self, units: int) -> int:
        """The index of the tier `units` units fall in (the first for none)."""
        for index, (_, end, _) in enumerate(self._spans()):
            if units <= end:
                return index
        return len(self.tiers) - 1

    def _spans(self) -> list[tuple[int, int, Tier]]:
        """Each tier with the units before it and its last unit (unbounded: MAX_UP_TO)."""
        spans, start = [], 0
        for tier in self.tiers:
            end = MAX_UP_TO if tier.up_to is None else tier.up_to
            spans.append((start, end, tier))
            start = end
        return spans

    def _part(self, units: int, price: Decimal) -> Decimal:
        return Decimal(units) * price / Decimal(self.unit_size)

    def _each(self, units: int, price: Decimal) -> str:
        per = "" if self.unit_size == 1 else f" / {self.unit_size:,}"
        return f"{units:,} x {money_text(price)}{per}"


@dataclass(frozen=True, slots=True)
class ValuePrice:
    """The price of the units whose events carry one value of the dimension's property."""

    value: str
    """The property's value as text (a number as JSON writes it: `5`, a switch `true`)."""
    price: Price


@dataclass(frozen=True, slots=True)
class Dimension:
    """Prices by the value of one event property: each listed value at its own price, in
    the order the included quantity covers them; every other value at the metric's price."""

    property: str
    prices: tuple[ValuePrice, ...]

    def values(self) -> list[str]:
        """The values listed, in order."""
        return [listed.value for listed in self.prices]


@dataclass(frozen=True, slots=True)
class Share:
    """The units of one value of a metric (or all of them, without a dimension), how many of
    the included quantity cover them, and their price."""

    value: str | None
    """The listed value; None for every value not listed (or the whole metric)."""
    used: int
    included: int | None
    """Of the metric's included quantity, the units that cover these (None: unlimited)."""
    price: Price

    @property
    def over(self) -> int:
        """The units beyond those included: those billed."""
        return 0 if self.included is None else self.used - self.included

    def cost(self) -> Cost:
        return self.price.cost(self.over)


def shares(
    price: Price,
    dimension: Dimension | None,
    used: int,
    by_value: Mapping[str, int],
    included: int | None,
) -> tuple[Share, ...]:
    """`used` units of a metric as its price splits them: without a dimension one share,
    all at `price`; with one, each listed value's units (`by_value`, at most what is left
    of `used`) at its own price, in the dimension's order, then the rest at `price`. The
    `included` quantity (None: unlimited) covers the shares in that order."""
    parts: list[tuple[str | None, int, Price]] = []
    left = used
    for listed in dimension.prices if dimension is not None else ():
        units = min(max(by_value.get(listed.value, 0), 0), left)
        parts.append((listed.value, units, listed.price))
        left -= units
    parts.append((None, left, price))
    if included is None:
        return tuple(Share(value, units, None, priced) for value, units, priced in parts)
    result, free = [], included
    for value, units, priced in parts:
        covered = min(units, free)
        result.append(Share(value, units, covered, priced))
        free -= covered
    return tuple(result)


def check_dimension(dimension: Dimension, field: str = "dimension") -> Dimension:
    """A dimension as an operator defines it: a property name (`common.validation`), 1 to
    MAX_DIMENSION_PRICES values, each a text of 1 to MAX_VALUE_LENGTH characters, listed
    once, each with a valid price (`check_price`, its parts named
    `dimension.prices[1].overage_unit_price`); InvalidInput names the first part wrong."""
    validate_property_name(dimension.property, f"{field}.property")
    if not 1 <= len(dimension.prices) <= MAX_DIMENSION_PRICES:
        raise InvalidInput(
            f"{field}.prices lists 1 to {MAX_DIMENSION_PRICES} values, each with its price "
            "(every other value has the metric's)",
            field=f"{field}.prices",
        )
    seen: set[str] = set()
    for index, listed in enumerate(dimension.prices):
        at = f"{field}.prices[{index}]"
        validate_id(listed.value, f"{at}.value", MAX_VALUE_LENGTH)
        if listed.value in seen:
            raise InvalidInput(f"{at}.value {listed.value!r} is listed twice", field=f"{at}.value")
        seen.add(listed.value)
        check_price(
            listed.price,
            f"{at}.overage_unit_price",
            f"{at}.overage_unit_size",
            f"{at}.tiers",
        )
    return dimension


def dimension_text(dimension: Dimension | None) -> str | None:
    """A dimension's prices as stored: a JSON list of each value with its price's model,
    unit price, unit size and tiers (None: no dimension)."""
    if dimension is None:
        return None
    return json.dumps(
        [
            {
                "value": listed.value,
                "model": listed.price.model.value,
                "unit_price": f"{listed.price.unit_price:f}",
                "unit_size": listed.price.unit_size,
                "tiers": json.loads(tiers_text(listed.price.tiers) or "[]"),
            }
            for listed in dimension.prices
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def dimension_of(prop: str | None, text: str | None) -> Dimension | None:
    """The dimension `dimension_text` stored for the property `prop` (none for None)."""
    if prop is None or not text:
        return None
    return Dimension(prop, _value_prices(text))


def _value_prices(text: str) -> tuple[ValuePrice, ...]:
    return tuple(
        ValuePrice(
            listed["value"],
            Price(
                PriceModel(listed["model"]),
                Decimal(listed["unit_price"]),
                listed["unit_size"],
                tiers_of(json.dumps(listed["tiers"])),
            ),
        )
        for listed in json.loads(text)
    )


@functools.lru_cache(maxsize=256)
def stored_dimension(text: str) -> tuple[Price, ...]:
    """The prices of a dimension as `dimension_text` stored them, read once for every
    counter priced by them."""
    return tuple(listed.price for listed in _value_prices(text))


def most_cost(prices: tuple[Price, ...], units: int) -> Decimal:
    """At most what `units` units beyond those included cost, however they split among
    `prices` (a metric's own and its dimension's, each value priced apart): every unit at
    the dearest rate any of them charges (a tier's too), plus every flat fee, a whole block
    of each package and a cent for each price's rounding. Never less than the lines that
    bill them come to."""
    if units <= 0:
        return round_money(Decimal(0))
    rates, extra = [], Decimal(0)
    for price in prices:
        charged = [tier.unit_price for tier in price.tiers] or [price.unit_price]
        rates += [rate / Decimal(price.unit_size) for rate in charged]
        extra += sum((tier.flat_fee for tier in price.tiers), Decimal(0)) + Decimal("0.01")
        if price.model is PriceModel.PACKAGE:
            extra += price.unit_price
    return round_money(Decimal(units) * max(rates) + extra)


def tiers_text(tiers: tuple[Tier, ...]) -> str | None:
    """Tiers as stored: a JSON list of `up_to`, `unit_price` and `flat_fee`, amounts as
    strings (None: no tiers)."""
    if not tiers:
        return None
    return json.dumps(
        [
            {"up_to": t.up_to, "unit_price": f"{t.unit_price:f}", "flat_fee": f"{t.flat_fee:f}"}
            for t in tiers
        ],
        separators=(",", ":"),
    )


def tiers_of(text: str | None) -> tuple[Tier, ...]:
    """The tiers `tiers_text` stored (none for None)."""
    if not text:
        return ()
    return tuple(
        Tier(t["up_to"], Decimal(t["unit_price"]), Decimal(t["flat_fee"])) for t in json.loads(text)
    )


@functools.lru_cache(maxsize=1024)
def stored_price(model: str, unit_price: Decimal, unit_size: int, tiers: str | None) -> Price:
    """A price as its columns store it (the tiers as `tiers_text` wrote them): read once for
    every counter priced by it."""
    return Price(PriceModel(model), unit_price, unit_size, tiers_of(tiers))


def _fee(fee: Decimal) -> str:
    return f" + {money_text(fee)}" if fee else ""


def check_amount(
    value: Decimal, places: int, most: Decimal, field: str, *, above_zero: bool = False
) -> None:
    """InvalidInput naming `field` unless `value` is from 0 (`above_zero`: above it) to
    `most` with at most `places` decimals."""
    exponent = value.as_tuple().exponent
    if (
        not value.is_finite()
        or value < 0
        or (above_zero and value == 0)
        or value > most
        or not isinstance(exponent, int)
        or -exponent > places
    ):
        bounds = f"above 0 and at most {most}," if above_zero else f"an amount from 0 to {most}"
        raise InvalidInput(f"{field} must be {bounds} with at most {places} decimals", field=field)


def validate_price(price: Price, field: str = "price") -> Price:
    """A price as an operator defines it, checked whole (`check_price`), its parts named
    under `field` (`price.tiers[2].up_to`)."""
    return check_price(price, f"{field}.unit_price", f"{field}.unit_size", f"{field}.tiers")


def check_price(price: Price, unit_price: str, unit_size: str, tiers: str) -> Price:
    """A price as an operator defines it, checked whole; InvalidInput names the first part
    that is wrong, by the names given for the unit price, the unit size and the tiers
    (`tiers[2].up_to`): a block of 1 to MAX_UNIT_SIZE units; for per_unit and package a
    unit price and no tiers; for graduated and volume no unit price of its own and 1 to
    MAX_TIERS tiers, each ending above the one before, the last open-ended, each with a unit
    price (at most six decimals) and a flat fee (at most two)."""
    if not 1 <= price.unit_size <= MAX_UNIT_SIZE:
        raise InvalidInput(f"{unit_size} must be from 1 to {MAX_UNIT_SIZE:,}", field=unit_size)
    check_amount(price.unit_price, 6, MAX_UNIT_PRICE, unit_price)
    if price.model not in TIERED:
        if price.tiers:
            raise InvalidInput(
                f"{tiers} are for graduated and volume prices, not {price.model}", field=tiers
            )
        return price
    if price.unit_price:
        raise InvalidInput(
            f"a {price.model} price sets its unit price per tier, not in {unit_price}",
            field=unit_price,
        )
    if not 1 <= len(price.tiers) <= MAX_TIERS:
        raise InvalidInput(f"a {price.model} price has 1 to {MAX_TIERS} tiers", field=tiers)
    before = 0
    for index, tier in enumerate(price.tiers):
        at = f"{tiers}[{index}]"
        last = index == len(price.tiers) - 1
        if last and tier.up_to is not None:
            raise InvalidInput(
                f"{at}.up_to must be null: the last tier prices every unit after the one before it",
                field=f"{at}.up_to",
            )
        if not last and (tier.up_to is None or not before < tier.up_to < MAX_UP_TO):
            raise InvalidInput(
                f"{at}.up_to must be a whole number of units above {before:,} (where "
                f"{'the tier before it ends' if index else 'the included units end'}) and "
                f"below {MAX_UP_TO:,}; only the last tier is open-ended",
                field=f"{at}.up_to",
            )
        check_amount(tier.unit_price, 6, MAX_UNIT_PRICE, f"{at}.unit_price")
        check_amount(tier.flat_fee, 2, MAX_FLAT_FEE, f"{at}.flat_fee")
        before = tier.up_to or before
    return price
