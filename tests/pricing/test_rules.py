"""The price models (pricing.rules): hand-worked costs of each, their properties over any
tiers and quantities, and what an operator's price may hold."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.common.money import round_money
from billing_kernel.errors import InvalidInput
from billing_kernel.pricing.rules import (
    MAX_FLAT_FEE,
    MAX_TIERS,
    MAX_UNIT_PRICE,
    MAX_UNIT_SIZE,
    MAX_UP_TO,
    NOTHING,
    Cost,
    Price,
    PriceModel,
    Tier,
    check_price,
    stored_price,
    tiers_of,
    tiers_text,
    validate_price,
)

D = Decimal
GRADUATED, VOLUME = PriceModel.GRADUATED, PriceModel.VOLUME
TIERS = (
    Tier(1_000, D("0.01")),
    Tier(5_000, D("0.008"), D("5.00")),
    Tier(None, D("0.005"), D("20.00")),
)


def test_per_unit_charges_a_partial_block_proportionally() -> None:
    price = Price(PriceModel.PER_UNIT, D("0.02"), 1_000)
    assert price.cost(1_500) == Cost(1_500, D("0.03"), "1,500 x 0.02 / 1,000")
    assert Price(unit_price=D("0.5")).cost(3) == Cost(3, D("1.5"), "3 x 0.50")
    assert price.cost(0) == price.cost(-5) == NOTHING


def test_package_charges_a_partial_block_as_a_whole_one() -> None:
    price = Price(PriceModel.PACKAGE, D("5.00"), 1_000)
    assert price.cost(1_500) == Cost(1_500, D("10.00"), "⌈1,500 / 1,000⌉ = 2 x 5.00")
    assert price.cost(1_000).exact == D("5.00")
    assert price.cost(1_001).exact == D("10.00")
    assert price.cost(1).exact == D("5.00")
    assert price.cost(0) == NOTHING


def test_graduated_prices_each_unit_by_its_tier_and_adds_each_reached_tiers_fee() -> None:
    price = Price(GRADUATED, tiers=TIERS)
    assert price.cost(600) == Cost(600, D("6.00"), "600 x 0.01")
    assert price.cost(1_000).exact == D("10.00")
    # 1,000 x 0.01 + 1 x 0.008 + 5.00: the second tier's fee once it is reached
    assert price.cost(1_001).exact == D("15.008")
    assert price.cost(7_000) == Cost(
        7_000,
        D("10") + D("32") + D("5") + D("10") + D("20"),
        "1,000 x 0.01 + 4,000 x 0.008 + 5.00 + 2,000 x 0.005 + 20.00",
    )
    assert price.cost(0) == NOTHING


def test_volume_prices_every_unit_by_the_tier_the_whole_reaches() -> None:
    price = Price(VOLUME, tiers=TIERS)
    assert price.cost(1_000) == Cost(1_000, D("10.00"), "1,000 x 0.01")
    assert price.cost(1_001) == Cost(1_001, D("8.008") + D("5.00"), "1,001 x 0.008 + 5.00")
    assert price.cost(7_000) == Cost(7_000, D("35.00") + D("20.00"), "7,000 x 0.005 + 20.00")
    assert [price.tier_reached(n) for n in (0, 1, 1_000, 1_001, 5_000, 5_001)] == [
        0,
        0,
        0,
        1,
        1,
        2,
    ]
    assert price.tier_reached(MAX_UP_TO + 1) == 2
    assert price.cost(0) == NOTHING


def test_tiers_price_per_block_of_the_prices_unit_size() -> None:
    per_million = (Tier(1_000_000, D("2.00")), Tier(None, D("1.50")))
    graduated = Price(GRADUATED, unit_size=1_000_000, tiers=per_million)
    assert graduated.cost(2_500_000) == Cost(
        2_500_000,
        D("2.00") + D("2.25"),
        "1,000,000 x 2.00 / 1,000,000 + 1,500,000 x 1.50 / 1,000,000",
    )
    volume = Price(VOLUME, unit_size=1_000_000, tiers=per_million)
    assert volume.cost(500_000).exact == D("1.00")


def test_a_line_charges_the_exact_cost_rounded_half_up_once() -> None:
    per_1k = Price(PriceModel.PER_UNIT, D("0.02"), 1000)
    assert per_1k.cost(1500).amount == D("0.03")
    assert per_1k.cost(250).amount == D("0.01")  # 0.005 rounds half up
    assert per_1k.cost(249).amount == D("0.00")
    assert Price(unit_price=D("15.00")).cost(3).amount == D("45.00")
    assert per_1k.cost(0).amount == D("0.00")
    assert Price(unit_size=1000).cost(10**12).amount == D("0.00")
    assert Price(GRADUATED, tiers=TIERS).cost(1_001).amount == D("15.01")


@given(
    quantity=st.integers(min_value=0, max_value=10**15),
    cents_per_block=st.integers(min_value=0, max_value=10**6),
    block=st.sampled_from([1, 1000, 1_000_000]),
)
def test_a_per_unit_line_is_exact_to_the_cent(
    quantity: int, cents_per_block: int, block: int
) -> None:
    price = Decimal(cents_per_block) / 10_000  # down to 1/100 of a cent per block
    amount = Price(PriceModel.PER_UNIT, price, block).cost(quantity).amount
    exact = Decimal(quantity) * price / block
    assert amount == round_money(amount)
    assert abs(amount - exact) <= Decimal("0.005")


# Properties, over any valid tiers and quantities


@st.composite
def tiered(draw: st.DrawFn, model: PriceModel | None = None) -> Price:
    ends = draw(st.lists(st.integers(1, 10**9), max_size=MAX_TIERS - 1, unique=True))
    ups: list[int | None] = [*sorted(ends), None]
    tiers = tuple(
        Tier(
            up_to,
            draw(st.decimals(0, 100, places=6)),
            draw(st.decimals(0, 1_000, places=2)),
        )
        for up_to in ups
    )
    chosen = model or draw(st.sampled_from([GRADUATED, VOLUME]))
    return validate_price(Price(chosen, unit_size=draw(st.integers(1, 10_000)), tiers=tiers))


UNITS = st.integers(0, 2 * 10**9)


def units_in(price: Price, units: int) -> list[int]:
    """How many of `units` each tier holds, counted independently of `Price.cost`."""
    held, start = [], 0
    for tier in price.tiers:
        end = units if tier.up_to is None else min(units, tier.up_to)
        held.append(max(end - start, 0))
        start = tier.up_to or start
    return held


@given(tiered(GRADUATED), UNITS)
def test_graduated_is_the_sum_of_its_tiers(price: Price, units: int) -> None:
    expected = sum(
        (
            Decimal(n) * tier.unit_price / Decimal(price.unit_size) + tier.flat_fee
            for n, tier in zip(units_in(price, units), price.tiers, strict=True)
            if n
        ),
        Decimal(0),
    )
    assert price.cost(units).exact == expected
    assert sum(units_in(price, units)) == max(units, 0)


@given(tiered(VOLUME), UNITS, UNITS)
def test_volume_is_monotone_in_the_tier_reached(price: Price, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert price.tier_reached(low) <= price.tier_reached(high)
    if price.tier_reached(low) == price.tier_reached(high):
        assert price.cost(low).exact <= price.cost(high).exact
    tier = price.tiers[price.tier_reached(high)]
    if high:
        expected = Decimal(high) * tier.unit_price / Decimal(price.unit_size) + tier.flat_fee
        assert price.cost(high).exact == expected


@given(st.decimals(0, MAX_UNIT_PRICE, places=6), st.integers(1, MAX_UNIT_SIZE), UNITS, UNITS)
def test_a_package_never_costs_less_for_more(
    unit_price: Decimal, size: int, a: int, b: int
) -> None:
    price = validate_price(Price(PriceModel.PACKAGE, unit_price, size))
    low, high = sorted((a, b))
    assert price.cost(low).exact <= price.cost(high).exact
    blocks = price.cost(high).exact / unit_price if unit_price else None
    if blocks is not None:
        assert (blocks - 1) * size < high <= blocks * size  # the fewest whole blocks


@given(
    st.one_of(tiered(), st.builds(Price, unit_price=st.decimals(0, 100, places=6))), UNITS, UNITS
)
def test_a_month_priced_in_two_parts_cumulatively_costs_what_it_costs_whole(
    price: Price, first: int, late: int
) -> None:
    """What late usage relies on: billing a first part, then the cost of all of it less
    what was billed (each rounded as its own line), adds up to the whole rounded once; only
    volume pricing may give some back (the whole reaching a cheaper tier)."""
    billed = round_money(price.cost(first).exact)
    whole = round_money(price.cost(first + late).exact)
    adjustment = whole - billed
    assert billed + adjustment == whole
    assert adjustment >= 0 or price.model is VOLUME


@given(tiered(GRADUATED), UNITS, UNITS)
def test_graduated_never_costs_less_for_more(price: Price, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert price.cost(low).exact <= price.cost(high).exact


# What an operator's price may hold


def steps(count: int) -> tuple[Tier, ...]:
    """`count` tiers of a unit each, the last open-ended."""
    return (*(Tier(n + 1, D(1)) for n in range(count - 1)), Tier(None, D(1)))


def test_a_valid_price_of_each_model_is_kept_as_it_is() -> None:
    for price in (
        Price(unit_price=MAX_UNIT_PRICE, unit_size=MAX_UNIT_SIZE),
        Price(PriceModel.PACKAGE, D("5"), 1),
        Price(GRADUATED, tiers=TIERS),
        Price(VOLUME, tiers=(Tier(None, D("0.000001"), MAX_FLAT_FEE),)),
        Price(
            GRADUATED,
            tiers=steps(MAX_TIERS),
        ),
    ):
        assert validate_price(price) is price


@pytest.mark.parametrize(
    ("price", "field", "words"),
    [
        (Price(unit_size=0), "price.unit_size", "from 1 to 1,000,000,000,000"),
        (Price(unit_size=MAX_UNIT_SIZE + 1), "price.unit_size", "from 1"),
        (Price(unit_price=D("-1")), "price.unit_price", "from 0"),
        (Price(unit_price=D("0.0000001")), "price.unit_price", "at most 6 decimals"),
        (Price(unit_price=MAX_UNIT_PRICE + 1), "price.unit_price", "from 0"),
        (Price(tiers=TIERS), "price.tiers", "not per_unit"),
        (Price(PriceModel.PACKAGE, D(1), tiers=TIERS), "price.tiers", "not package"),
        (Price(GRADUATED, D(1), tiers=TIERS), "price.unit_price", "per tier"),
        (Price(VOLUME), "price.tiers", f"1 to {MAX_TIERS} tiers"),
        (
            Price(
                GRADUATED,
                tiers=steps(MAX_TIERS + 1),
            ),
            "price.tiers",
            "1 to 20 tiers",
        ),
        (Price(GRADUATED, tiers=(Tier(10, D(1)),)), "price.tiers[0].up_to", "must be null"),
        (
            Price(VOLUME, tiers=(Tier(None, D(1)), Tier(None, D(1)))),
            "price.tiers[0].up_to",
            "above 0 (where the included units end)",
        ),
        (
            Price(GRADUATED, tiers=(Tier(0, D(1)), Tier(None, D(1)))),
            "price.tiers[0].up_to",
            "above 0",
        ),
        (
            Price(GRADUATED, tiers=(Tier(100, D(1)), Tier(100, D(1)), Tier(None, D(1)))),
            "price.tiers[1].up_to",
            "above 100 (where the tier before it ends)",
        ),
        (
            Price(GRADUATED, tiers=(Tier(100, D(1)), Tier(50, D(1)), Tier(None, D(1)))),
            "price.tiers[1].up_to",
            "above 100",
        ),
        (
            Price(VOLUME, tiers=(Tier(MAX_UP_TO, D(1)), Tier(None, D(1)))),
            "price.tiers[0].up_to",
            f"below {MAX_UP_TO:,}",
        ),
        (
            Price(VOLUME, tiers=(Tier(10, D("0.0000001")), Tier(None, D(1)))),
            "price.tiers[0].unit_price",
            "at most 6 decimals",
        ),
        (
            Price(VOLUME, tiers=(Tier(10, D(1)), Tier(None, D(1), D("0.001")))),
            "price.tiers[1].flat_fee",
            "at most 2 decimals",
        ),
        (
            Price(VOLUME, tiers=(Tier(10, D(1)), Tier(None, D(1), MAX_FLAT_FEE + 1))),
            "price.tiers[1].flat_fee",
            "from 0",
        ),
        (
            Price(VOLUME, tiers=(Tier(10, D(1), D("-1")), Tier(None, D(1)))),
            "price.tiers[0].flat_fee",
            "from 0",
        ),
    ],
)
def test_a_price_is_refused_naming_the_part_that_is_wrong(
    price: Price, field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_price(price)
    assert refused.value.details["field"] == field
    assert words in str(refused.value)


def test_a_price_is_checked_under_the_name_it_is_given() -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_price(Price(unit_size=0), "metrics.tokens.price")
    assert refused.value.details["field"] == "metrics.tokens.price.unit_size"


def test_a_price_is_checked_under_the_names_its_owner_gives_its_parts() -> None:
    tiers = (Tier(10, D(1)), Tier(10, D(1)), Tier(None, D(1)))
    with pytest.raises(InvalidInput) as refused:
        check_price(Price(GRADUATED, tiers=tiers), "overage_unit_price", "size", "tiers")
    assert refused.value.details["field"] == "tiers[1].up_to"
    assert "above 10 (where the tier before it ends)" in str(refused.value)
    with pytest.raises(InvalidInput) as refused:
        check_price(Price(GRADUATED, D(1), tiers=TIERS), "overage_unit_price", "size", "tiers")
    assert refused.value.details["field"] == "overage_unit_price"
    assert "sets its unit price per tier, not in overage_unit_price" in str(refused.value)
    with pytest.raises(InvalidInput) as refused:
        check_price(Price(unit_size=0), "overage_unit_price", "overage_unit_size", "tiers")
    assert str(refused.value) == "overage_unit_size must be from 1 to 1,000,000,000,000"


def test_a_price_is_free_only_when_no_price_and_no_fee_charges() -> None:
    assert Price().is_free
    assert not Price(unit_price=D("0.000001")).is_free
    assert Price(VOLUME, tiers=(Tier(10, D(0)), Tier(None, D(0)))).is_free
    assert not Price(VOLUME, tiers=(Tier(10, D(0)), Tier(None, D("0.01")))).is_free
    assert not Price(GRADUATED, tiers=(Tier(10, D(0), D("1.00")), Tier(None, D(0)))).is_free


def test_a_line_states_the_unit_price_its_units_reached() -> None:
    assert Price(unit_price=D("0.02")).unit_price_at(10**9) == D("0.02")
    assert Price(PriceModel.PACKAGE, D("5"), 100).unit_price_at(1) == D("5")
    volume = Price(VOLUME, tiers=TIERS)
    assert volume.unit_price_at(1) == volume.unit_price_at(1_000) == D("0.01")
    assert volume.unit_price_at(1_001) == volume.unit_price_at(5_000) == D("0.008")
    assert volume.unit_price_at(5_001) == D("0.005")
    assert Price(GRADUATED, tiers=TIERS).unit_price_at(7_000) == D("0.005")


def test_each_model_is_described_in_a_few_words() -> None:
    assert Price(unit_price=D("0.02"), unit_size=1_000).describe() == "0.02 per 1,000"
    assert Price(unit_price=D("15")).describe() == "15.00 each"
    assert (
        Price(PriceModel.PACKAGE, D("5"), 1_000).describe()
        == "5.00 per 1,000, a part charged whole"
    )
    assert Price(GRADUATED, tiers=TIERS).describe() == (
        "graduated: 0.01 each up to 1,000; 0.008 each + 5.00 up to 5,000; 0.005 each + 20.00 beyond"
    )
    volume = Price(VOLUME, unit_size=1_000, tiers=(Tier(100, D("2")), Tier(None, D("1"))))
    assert volume.describe(lambda amount: f"${amount}") == (
        "volume: all at $2 per 1,000 up to 100; $1 per 1,000 beyond"
    )
    assert volume.describe(units="<{}>".format) == (
        "volume: all at 2.00 per 1,000 up to <100>; 1.00 per 1,000 beyond"
    )


def test_a_price_is_described_in_parts_a_tier_each() -> None:
    assert Price(unit_price=D("0.02"), unit_size=1_000).described() == ["0.02 per 1,000"]
    assert Price(GRADUATED, tiers=TIERS).described() == [
        "graduated:",
        "0.01 each up to 1,000",
        "0.008 each + 5.00 up to 5,000",
        "0.005 each + 20.00 beyond",
    ]
    volume = Price(VOLUME, unit_size=1_000, tiers=(Tier(100, D("2")), Tier(None, D("1"))))
    assert volume.described(units=lambda n: f"{n // 100}H") == [
        "volume:",
        "all at 2.00 per 1,000 up to 1H",
        "1.00 per 1,000 beyond",
    ]


def test_tiers_are_stored_as_text_and_read_back_exactly() -> None:
    assert tiers_text(()) is None
    assert tiers_of(None) == tiers_of("") == ()
    text = tiers_text(TIERS)
    assert text == (
        '[{"up_to":1000,"unit_price":"0.01","flat_fee":"0"},'
        '{"up_to":5000,"unit_price":"0.008","flat_fee":"5.00"},'
        '{"up_to":null,"unit_price":"0.005","flat_fee":"20.00"}]'
    )
    assert tiers_of(text) == TIERS
    stored = stored_price("volume", D("0"), 1_000, text)
    assert stored == Price(VOLUME, D("0"), 1_000, TIERS)
    assert stored_price("per_unit", D("0.02"), 1_000, None) == Price(
        unit_price=D("0.02"), unit_size=1_000
    )


@given(tiered())
def test_any_valid_tiers_read_back_as_they_were_stored(price: Price) -> None:
    assert tiers_of(tiers_text(price.tiers)) == price.tiers
