"""Money: `Decimal` only, rounded to the currency's cents in exactly one place.

What usage costs is worked out exactly (`pricing.rules`); the exact amount of each charge
line is rounded once, half up, to cents by `round_money`; totals are sums of rounded lines,
so an invoice always adds up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
MAX_AMOUNT = Decimal("999999999999.99")
"""The largest amount an invoice line, subtotal or total may come to, either way: what its
columns hold (NUMERIC(14, 2))."""

PRICE_TERMS_APART = "\x1f"
"""What sets a dimension's prices apart from the rest of a price's terms read as one text
(`db.limits.price_terms_of`, `usage.bounds.charge_of`): a control character, which no JSON
text holds unescaped."""


def within_bounds(amount: Decimal) -> bool:
    """Whether an invoice amount is one the kernel can store: at most MAX_AMOUNT either way."""
    return -MAX_AMOUNT <= amount <= MAX_AMOUNT


def round_money(amount: Decimal) -> Decimal:
    """The one rounding rule for money: half up, to cents."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def exact_text(amount: Decimal) -> str:
    """An unrounded amount (or a share) in the fewest digits that hold it, however it was
    scaled: '24.5', '4.69134', '20'. What a formula shows before the rounding."""
    return f"{amount.normalize():f}"


def money_text(amount: Decimal, *, thousands: bool = False) -> str:
    """How an amount is written: at least two decimals, more only when it has them (a unit
    price such as 0.015), never rounded away: '49.00', '0.015', with `thousands`
    '1,234.50'. The API, the CLI and the billing page all write money with it."""
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int), "money is a finite Decimal"
    places = max(2, -exponent)
    return f"{amount:{',' if thousands else ''}.{places}f}"
