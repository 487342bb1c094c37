"""Coupons and what they take off an invoice (discounts.rules)."""

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.discounts.rules import (
    FEE,
    MAX_PERIODS,
    Coupon,
    Discountable,
    Duration,
    Kind,
    Redemption,
    applies,
    check_coupon,
    discounts,
    in_effect,
)
from billing_kernel.errors import InvalidInput

D = Decimal
NOV = BillingPeriod.parse("2026-11")
PCT = Coupon("LAUNCH20", "Launch", Kind.PERCENT, D("20"), Duration.REPEATING, periods=3)
FIVE = Coupon("FIVE", "Five off", Kind.AMOUNT, D("5.00"), Duration.ONCE, currency="USD")


def at(month: int, day: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, day, 12, tzinfo=UTC)


def line(target: str | None, amount: str, plan: str = "pro") -> Discountable:
    return Discountable(target, plan, D(amount))


# -- defining a coupon ------------------------------------------------------------------------


def test_a_well_formed_coupon_is_kept_as_it_is() -> None:
    assert check_coupon(PCT) == PCT
    assert check_coupon(FIVE) == FIVE
    whole = replace(PCT, value=D("100"), plans=("pro",), applies_to=(FEE, "tokens"))
    assert check_coupon(whole) == whole


CODE = "code must be 1 to 64 letters, digits, _ and -, starting with a letter or digit"
NAME = "name must be 1 to 200 characters, not only spaces"
PERCENT = "percent_off must be above 0 and at most 100, with at most 2 decimals"
AMOUNT = "amount_off must be above 0 and at most 999999999999.99, with at most 2 decimals"
NEEDS_CURRENCY = "an amount off needs its currency, a three-letter code such as USD"
NEEDS_PERIODS = "a repeating coupon needs periods, from 1 to 120"
MAX = "max_redemptions must be a whole number from 1 to 2147483647"


@pytest.mark.parametrize(
    ("coupon", "field", "message"),
    [
        (replace(PCT, code=""), "code", CODE),
        (replace(PCT, code="-x"), "code", CODE),
        (replace(PCT, code="a b"), "code", CODE),
        (replace(PCT, code="x" * 65), "code", CODE),
        (replace(PCT, name="  "), "name", NAME),
        (replace(PCT, name="x" * 201), "name", NAME),
        (replace(PCT, value=D("0")), "percent_off", PERCENT),
        (replace(PCT, value=D("100.01")), "percent_off", PERCENT),
        (replace(PCT, value=D("12.345")), "percent_off", PERCENT),
        (replace(PCT, value=D("NaN")), "percent_off", PERCENT),
        (
            replace(PCT, currency="USD"),
            "currency",
            "currency is for an amount off: a percentage applies in any currency",
        ),
        (replace(FIVE, value=D("-1")), "amount_off", AMOUNT),
        (replace(FIVE, value=D("5.001")), "amount_off", AMOUNT),
        (replace(FIVE, value=D("1000000000000")), "amount_off", AMOUNT),
        (replace(FIVE, currency=None), "currency", NEEDS_CURRENCY),
        (replace(FIVE, currency="usd"), "currency", NEEDS_CURRENCY),
        (replace(PCT, periods=None), "periods", NEEDS_PERIODS),
        (replace(PCT, periods=0), "periods", NEEDS_PERIODS),
        (replace(PCT, periods=MAX_PERIODS + 1), "periods", NEEDS_PERIODS),
        (
            replace(FIVE, periods=2),
            "periods",
            "periods is for a repeating coupon, not one that lasts once",
        ),
        (replace(PCT, plans=()), "plans", "plans must name 1 to 50 (leave it out for all)"),
        (
            replace(PCT, plans=("Pro",)),
            "plans[0]",
            "plans[0] must be a lowercase key of 1 to 64 letters, digits, _ and -",
        ),
        (
            replace(PCT, applies_to=("fee", "x", "-y")),
            "applies_to[2]",
            "applies_to[2] must be a lowercase key of 1 to 64 letters, digits, _ and -",
        ),
        (replace(PCT, applies_to=("tokens", "tokens")), "applies_to", "applies_to names one twice"),
        (
            replace(PCT, applies_to=tuple(f"m{n}" for n in range(51))),
            "applies_to",
            "applies_to must name 1 to 50 (leave it out for all)",
        ),
        (replace(PCT, max_redemptions=0), "max_redemptions", MAX),
        (replace(PCT, max_redemptions=2**31), "max_redemptions", MAX),
    ],
)
def test_a_wrong_part_is_refused_by_name(coupon: Coupon, field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_coupon(coupon)
    assert refused.value.details["field"] == field
    assert refused.value.message == message


def test_every_part_at_its_bounds_is_taken() -> None:
    for edge in (
        replace(PCT, name="x" * 200, value=D("0.01"), periods=1),
        replace(PCT, value=D("100"), periods=MAX_PERIODS, max_redemptions=1),
        replace(PCT, max_redemptions=2**31 - 1, plans=("a",), applies_to=("fee",)),
        replace(PCT, applies_to=tuple(f"m{n}" for n in range(50)), plans=("p" * 64,)),
        replace(FIVE, value=D("0.01")),
        replace(FIVE, value=D("999999999999.99"), code="x" * 64),
    ):
        assert check_coupon(edge) == edge


def test_a_coupon_says_what_it_takes_and_for_how_long() -> None:
    assert PCT.describe() == "20% off for 3 months"
    assert replace(PCT, periods=1).lasts == "for 1 month"
    assert FIVE.describe() == "5.00 USD off for one month"
    forever = replace(PCT, value=D("12.50"), duration=Duration.FOREVER, periods=None)
    assert forever.describe() == "12.5% off forever"
    narrow = replace(PCT, applies_to=(FEE, "tokens"), plans=("pro", "team"))
    assert narrow.describe() == "20% off for 3 months, on the plan fee, tokens (pro, team only)"


def test_a_coupon_may_be_applied_until_archived_past_its_day_or_at_its_limit() -> None:
    assert PCT.why_not_redeemable(at(11)) is None
    archived = replace(PCT, archived_at=at(10))
    assert archived.why_not_redeemable(at(11)) == "coupon LAUNCH20 is archived"
    dated = replace(PCT, redeem_by=at(11, 30))
    assert dated.why_not_redeemable(at(11, 30)) is None
    assert "could be applied until 2026-11-30T12:00:00+00:00" in str(
        dated.why_not_redeemable(at(12))
    )
    limited = replace(PCT, max_redemptions=2, redemptions=1)
    assert limited.why_not_redeemable(at(11)) is None
    full = replace(limited, redemptions=2)
    assert full.why_not_redeemable(at(11)) == (
        "coupon LAUNCH20 has been applied to 2 orgs, its limit of 2"
    )


def test_two_definitions_are_one_coupon_only_with_the_same_terms() -> None:
    stored = replace(PCT, created_at=at(1), redemptions=4)
    assert stored.terms() == PCT.terms()
    for other in (
        replace(PCT, value=D("25")),
        replace(PCT, periods=4),
        replace(PCT, name="Other"),
        replace(PCT, applies_to=("tokens",)),
        replace(PCT, plans=("pro",)),
        replace(PCT, max_redemptions=9),
        replace(PCT, redeem_by=at(12)),
        replace(PCT, duration=Duration.FOREVER, periods=None),
    ):
        assert other.terms() != PCT.terms()


# -- which periods it covers ------------------------------------------------------------------


def test_once_covers_the_month_it_was_applied_in() -> None:
    once = replace(PCT, duration=Duration.ONCE, periods=None)
    assert once.covers(at(11, 17), NOV)
    assert not once.covers(at(11, 17), NOV.next())
    assert not once.covers(at(11, 17), NOV.previous())
    unchecked = replace(PCT, periods=None)  # a repeating coupon without its count: none
    assert not unchecked.covers(at(11, 17), NOV)


def test_repeating_covers_that_month_and_the_ones_after_it_up_to_its_count() -> None:
    applied = at(11, 30)
    months = [NOV.previous(), NOV, NOV.next(), NOV.next().next(), NOV.next().next().next()]
    assert [PCT.covers(applied, m) for m in months] == [False, True, True, True, False]
    across_years = at(12, 5)
    assert PCT.covers(across_years, BillingPeriod.parse("2027-02"))
    assert not PCT.covers(across_years, BillingPeriod.parse("2027-03"))


def test_forever_covers_every_month_from_the_one_it_was_applied_in() -> None:
    forever = replace(PCT, duration=Duration.FOREVER, periods=None)
    assert forever.covers(at(11), BillingPeriod.parse("2036-11"))
    assert not forever.covers(at(11), NOV.previous())


def test_an_invoice_takes_what_was_applied_and_not_removed_when_it_was_made() -> None:
    applied = Redemption("org", PCT, at(11, 3), removed_at=at(12, 10))
    assert applied.discounts(NOV, at(12, 1))
    assert not applied.discounts(NOV, at(11, 2))  # made before it was applied
    assert not applied.discounts(NOV, at(11, 3))  # at its instant: after the invoice
    assert applied.discounts(NOV, datetime(2026, 11, 3, 12, 0, 0, 1, tzinfo=UTC))
    assert not applied.discounts(NOV.next(), datetime(2026, 12, 10, 12, 0, 0, 1, tzinfo=UTC))
    assert applied.discounts(NOV.next(), at(12, 10))  # removed at its instant: after it
    assert not Redemption("org", PCT, at(11, 3)).discounts(NOV.previous(), at(12, 1))


def test_a_redemption_knows_the_last_month_it_covers() -> None:
    assert Redemption("org", PCT, at(11, 30)).last_month == date(2027, 1, 1)
    assert Redemption("org", replace(PCT, periods=14), at(11, 30)).last_month == date(2027, 12, 1)
    once = replace(PCT, duration=Duration.ONCE, periods=None)
    assert Redemption("org", once, at(12, 31)).last_month == date(2026, 12, 1)
    forever = replace(PCT, duration=Duration.FOREVER, periods=None)
    assert Redemption("org", forever, at(1)).last_month is None
    assert (once.months, PCT.months, forever.months) == (1, 3, None)


def test_coupons_apply_in_the_order_they_were_applied() -> None:
    b = Redemption("org", replace(PCT, code="B"), at(11, 2))
    a = Redemption("org", replace(PCT, code="A"), at(11, 2))
    first = Redemption("org", FIVE, at(11, 1))
    gone = Redemption("org", replace(PCT, code="GONE"), at(11, 1), removed_at=at(11, 5))
    assert [c.code for c in in_effect([b, gone, a, first], NOV, at(12))] == ["FIVE", "A", "B"]


# -- what it takes off ------------------------------------------------------------------------


def test_a_percentage_takes_its_share_of_every_line_rounded_once() -> None:
    lines = [line(FEE, "29.00"), line("tokens", "123.75"), line(None, "-4.00")]
    (found,) = discounts(lines, [PCT], "USD")
    assert found.amount == D("30.55")
    assert found.formula == "20% of 152.75 = 30.55 → -30.55"
    (whole,) = discounts([line(FEE, "50.00")], [PCT], "USD")
    assert whole.formula == "20% of 50.00 = 10 → -10.00"
    third = replace(PCT, value=D("33.33"))
    (found,) = discounts([line(FEE, "10.00")], [third], "USD")
    assert found.amount == D("3.33")  # 3.333 rounded once
    assert found.formula == "33.33% of 10.00 = 3.333 → -3.33"
    half_cent = replace(PCT, value=D("50"))
    assert discounts([line(FEE, "0.01")], [half_cent], "EUR")[0].amount == D("0.01")


def test_an_amount_takes_no_more_than_its_lines_come_to() -> None:
    (found,) = discounts([line(FEE, "29.00")], [FIVE], "USD")
    assert (found.amount, found.formula) == (D("5.00"), "5.00 off → -5.00")
    (capped,) = discounts([line(FEE, "3.20")], [FIVE], "USD")
    assert capped.amount == D("3.20")
    assert capped.formula == "5.00 off, no more than the 3.20 it applies to → -3.20"


def test_an_amount_in_another_currency_takes_nothing_and_the_next_still_takes() -> None:
    assert discounts([line(FEE, "29.00")], [FIVE], "EUR") == []
    assert [d.coupon for d in discounts([line(FEE, "29.00")], [FIVE, PCT], "EUR")] == [PCT]
    assert discounts([line(FEE, "29.00")], [PCT], "EUR")[0].amount == D("5.80")


def test_a_coupon_that_takes_nothing_leaves_the_next_to_take() -> None:
    on_runs = replace(PCT, code="RUNS", applies_to=("runs",))
    tiny = replace(PCT, code="TINY", value=D("10"))  # 10 % of 0.04: 0.004, rounded to 0.00
    only_fee = [line(FEE, "0.04")]
    assert [d.coupon.code for d in discounts(only_fee, [on_runs, tiny, PCT], "USD")] == ["LAUNCH20"]
    runs_amount = replace(FIVE, applies_to=("runs",))
    assert [d.coupon for d in discounts(only_fee, [runs_amount, PCT], "USD")] == [PCT]


def all_off(code: str, target: str) -> Coupon:
    return replace(PCT, code=code, value=D("100"), applies_to=(target,))


@pytest.mark.parametrize(
    ("fee", "tokens", "fee_left", "tokens_left"),
    [
        ("10.00", "20.01", "6.67", "13.34"),  # the cent left over goes to tokens, which lost most
        ("10.02", "19.99", "6.68", "13.33"),  # ... to the fee, which lost most
        ("0.03", "0.03", "0.01", "0.02"),  # lost alike: to the first
    ],
)
def test_a_percentage_is_shared_between_its_lines_in_cents(
    fee: str, tokens: str, fee_left: str, tokens_left: str
) -> None:
    third = replace(PCT, value=D("33.33")) if fee != "0.03" else replace(PCT, value=D("50"))
    lines = [line(FEE, fee), line("tokens", tokens)]
    first, on_tokens, on_fee = discounts(
        lines, [third, all_off("T", "tokens"), all_off("F", FEE)], "USD"
    )
    assert (on_fee.amount, on_tokens.amount) == (D(fee_left), D(tokens_left))
    assert first.amount + on_fee.amount + on_tokens.amount == D(fee) + D(tokens)


def test_nothing_is_taken_where_the_lines_come_to_nothing() -> None:
    assert discounts([], [PCT, FIVE], "USD") == []
    assert discounts([line(FEE, "0.00")], [PCT, FIVE], "USD") == []
    credited = [line(FEE, "-10.00"), line(FEE, "4.00")]  # a credit nets with its charge
    assert discounts(credited, [PCT, FIVE], "USD") == []
    assert discounts([line(None, "50.00")], [PCT], "USD") == []


def test_a_coupon_takes_only_from_its_lines_and_plans() -> None:
    lines = [line(FEE, "29.00"), line("tokens", "100.00"), line("runs", "10.00", plan="team")]
    on_tokens = replace(PCT, applies_to=("tokens",))
    assert discounts(lines, [on_tokens], "USD")[0].amount == D("20.00")
    on_fee = replace(PCT, applies_to=(FEE,))
    assert discounts(lines, [on_fee], "USD")[0].amount == D("5.80")
    on_team = replace(PCT, plans=("team",))
    assert discounts(lines, [on_team], "USD")[0].amount == D("2.00")
    assert not applies(on_team, "runs", "pro")
    assert applies(on_team, "runs", "team")
    assert not applies(PCT, None, "pro")
    assert discounts(lines, [replace(PCT, applies_to=("seats",))], "USD") == []


def test_each_coupon_sees_what_the_ones_before_it_left() -> None:
    lines = [line(FEE, "20.00"), line("tokens", "100.00")]
    half = replace(PCT, code="HALF", value=D("50"))
    on_tokens = replace(PCT, code="TOK", value=D("10"), applies_to=("tokens",))
    first, second = discounts(lines, [half, on_tokens], "USD")
    assert first.amount == D("60.00")
    assert second.amount == D("5.00")  # 10% of the 50.00 of tokens the first left
    assert second.formula == "10% of 50.00 = 5 → -5.00"
    amount_first = discounts(lines, [replace(FIVE, value=D("30.00")), on_tokens], "USD")
    assert [d.amount for d in amount_first] == [D("30.00"), D("9.00")]  # fee 20, tokens 10


@st.composite
def invoices(draw: st.DrawFn) -> tuple[list[Discountable], list[Coupon]]:
    targets = st.sampled_from([FEE, "tokens", "runs", None])
    cents = st.integers(-5_000, 100_000).map(lambda c: D(c) / 100)
    lines = draw(
        st.lists(
            st.builds(Discountable, targets, st.sampled_from(["pro", "team"]), cents), max_size=8
        )
    )
    percent = st.builds(
        lambda code, pct, on: Coupon(
            code, "P", Kind.PERCENT, D(pct) / 100, Duration.FOREVER, applies_to=on
        ),
        st.text("ABC", min_size=1, max_size=3),
        st.integers(1, 10_000),
        st.none() | st.just((FEE,)) | st.just(("tokens", "runs")),
    )
    amount = st.builds(
        lambda code, value, on: Coupon(
            code, "A", Kind.AMOUNT, D(value) / 100, Duration.ONCE, currency="USD", applies_to=on
        ),
        st.text("XYZ", min_size=1, max_size=3),
        st.integers(1, 200_000),
        st.none() | st.just(("runs",)),
    )
    return lines, draw(st.lists(percent | amount, max_size=4))


@given(invoices())
def test_discounts_never_take_their_lines_below_zero(
    invoice: tuple[list[Discountable], list[Coupon]],
) -> None:
    lines, coupons = invoice
    found = discounts(lines, coupons, "USD")
    groups: dict[tuple[str, str], Decimal] = {}
    for item in lines:
        if item.target is not None:
            key = (item.target, item.plan_slug)
            groups[key] = groups.get(key, D(0)) + item.amount
    discountable = sum((max(v, D(0)) for v in groups.values()), D(0))
    taken = sum((d.amount for d in found), D(0))
    assert D(0) <= taken <= discountable
    for d in found:
        assert d.amount > 0
        assert d.amount == d.amount.quantize(D("0.01"))
        assert d.formula.endswith(f"→ -{d.amount}")
        if d.coupon.kind is Kind.AMOUNT:
            assert d.amount <= d.coupon.value


@given(invoices())
def test_one_percentage_alone_is_its_share_of_its_lines_rounded_once(
    invoice: tuple[list[Discountable], list[Coupon]],
) -> None:
    lines, coupons = invoice
    for coupon in coupons:
        if coupon.kind is not Kind.PERCENT:
            continue
        groups: dict[tuple[str, str], Decimal] = {}
        for item in lines:
            if applies(coupon, item.target, item.plan_slug):
                key = (str(item.target), item.plan_slug)
                groups[key] = groups.get(key, D(0)) + item.amount
        base = sum((max(v, D(0)) for v in groups.values()), D(0))
        expected = (base * coupon.value / 100).quantize(D("0.01"), rounding="ROUND_HALF_UP")
        found = discounts(lines, [coupon], "USD")
        assert sum((d.amount for d in found), D(0)) == expected
