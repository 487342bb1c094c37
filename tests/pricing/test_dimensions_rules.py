"""Prices per dimension (pricing.rules.shares, check_dimension): how a metric's usage splits
by the values a price lists, how the shared included quantity covers them, and what an
operator's dimension may hold."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.errors import InvalidInput
from billing_kernel.pricing.rules import (
    MAX_DIMENSION_PRICES,
    MAX_VALUE_LENGTH,
    Dimension,
    Price,
    PriceModel,
    Share,
    Tier,
    ValuePrice,
    check_dimension,
    dimension_of,
    dimension_text,
    most_cost,
    shares,
    stored_dimension,
)

D = Decimal
OTHERS = Price(unit_price=D("0.05"), unit_size=1_000)
GPT5 = Price(unit_price=D("0.10"), unit_size=1_000)
MINI = Price(
    PriceModel.GRADUATED,
    unit_size=1_000,
    tiers=(Tier(100_000, D("0.02")), Tier(None, D("0.01"), D("1.00"))),
)
MODEL = Dimension("model", (ValuePrice("gpt-5", GPT5), ValuePrice("gpt-5-mini", MINI)))


def test_without_a_dimension_the_whole_metric_is_one_share() -> None:
    assert shares(OTHERS, None, 5_000, {"gpt-5": 4_000}, 1_000) == (
        Share(None, 5_000, 1_000, OTHERS),
    )
    [unlimited] = shares(OTHERS, None, 5_000, {}, None)
    assert (unlimited.included, unlimited.over, unlimited.cost().exact) == (None, 0, 0)


def test_the_included_quantity_covers_the_listed_values_in_order_then_the_others() -> None:
    split = shares(OTHERS, MODEL, 360_000, {"gpt-5": 60_000, "gpt-5-mini": 250_000}, 100_000)
    assert split == (
        Share("gpt-5", 60_000, 60_000, GPT5),
        Share("gpt-5-mini", 250_000, 40_000, MINI),
        Share(None, 50_000, 0, OTHERS),
    )
    assert [share.over for share in split] == [0, 210_000, 50_000]
    # 100,000 x 0.02 / 1,000 + 110,000 x 0.01 / 1,000 + 1.00; 50,000 x 0.05 / 1,000
    assert [share.cost().exact for share in split] == [0, D("4.1"), D("2.5")]


def test_a_value_without_usage_still_has_its_share_and_nothing_is_over_within_the_included() -> (
    None
):
    split = shares(OTHERS, MODEL, 30_000, {"gpt-5-mini": 30_000}, 100_000)
    assert [(s.value, s.used, s.included, s.over) for s in split] == [
        ("gpt-5", 0, 0, 0),
        ("gpt-5-mini", 30_000, 30_000, 0),
        (None, 0, 0, 0),
    ]


def test_values_are_read_as_at_most_what_the_metric_used() -> None:
    """The values' usage comes from event lines and the whole from the counter: a listed
    value never takes more than is left, so the shares always add up to the whole."""
    split = shares(OTHERS, MODEL, 1_000, {"gpt-5": 700, "gpt-5-mini": 700, "x": 5}, 0)
    assert [(s.value, s.used) for s in split] == [("gpt-5", 700), ("gpt-5-mini", 300), (None, 0)]
    assert [s.used for s in shares(OTHERS, MODEL, 10, {"gpt-5": -5}, 0)] == [0, 0, 10]


@given(
    st.integers(0, 10**9),
    st.dictionaries(st.sampled_from(["gpt-5", "gpt-5-mini", "other"]), st.integers(0, 10**9)),
    st.none() | st.integers(0, 10**9),
)
def test_shares_add_up_to_the_usage_and_the_included_to_what_it_covers(
    used: int, by_value: dict[str, int], included: int | None
) -> None:
    split = shares(OTHERS, MODEL, used, by_value, included)
    assert [s.value for s in split] == ["gpt-5", "gpt-5-mini", None]
    assert sum(s.used for s in split) == used
    assert all(s.used >= 0 and s.over >= 0 for s in split)
    if included is None:
        assert all(s.included is None for s in split)
    else:
        assert sum(s.included or 0 for s in split) == min(used, included)
        assert sum(s.over for s in split) == max(used - included, 0)
        # Only the first share not wholly covered can be partly covered.
        first_over = next((n for n, s in enumerate(split) if s.over), len(split))
        assert all(s.included == 0 for s in split[first_over + 1 :])


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 10**9))
def test_a_dimension_at_the_metrics_own_price_costs_what_no_dimension_costs(
    gpt5: int, rest: int, included: int
) -> None:
    same = Dimension("model", (ValuePrice("gpt-5", OTHERS),))
    split = shares(OTHERS, same, gpt5 + rest, {"gpt-5": gpt5}, included)
    [whole] = shares(OTHERS, None, gpt5 + rest, {}, included)
    assert sum((s.cost().exact for s in split), D(0)) == whole.cost().exact


# What an operator's dimension may hold


def test_a_valid_dimension_is_kept_and_read_back_as_stored() -> None:
    assert check_dimension(MODEL) is MODEL
    assert dimension_of("model", dimension_text(MODEL)) == MODEL
    assert dimension_text(None) is None
    assert dimension_of(None, None) is None
    assert dimension_of("model", None) is None
    numbers = Dimension("tier", (ValuePrice("5", GPT5), ValuePrice("true", OTHERS)))
    assert dimension_of("tier", dimension_text(numbers)) == numbers
    accented = Dimension("model", (ValuePrice("modèle-ü", GPT5),))
    assert '"value":"modèle-ü"' in (dimension_text(accented) or "")  # as written, not escaped
    assert dimension_of("model", dimension_text(accented)) == accented
    assert dimension_text(MODEL) == (
        '[{"value":"gpt-5","model":"per_unit","unit_price":"0.10","unit_size":1000,"tiers":[]},'
        '{"value":"gpt-5-mini","model":"graduated","unit_price":"0","unit_size":1000,"tiers":['
        '{"up_to":100000,"unit_price":"0.02","flat_fee":"0"},'
        '{"up_to":null,"unit_price":"0.01","flat_fee":"1.00"}]}]'
    )


@pytest.mark.parametrize(
    ("dimension", "field", "words"),
    [
        (Dimension("a b", MODEL.prices), "dimension.property", "a property name of 1-64"),
        (Dimension("", MODEL.prices), "dimension.property", "a property name of 1-64"),
        (Dimension("x" * 65, MODEL.prices), "dimension.property", "a property name of 1-64"),
        (
            Dimension("model", ()),
            "dimension.prices",
            "dimension.prices lists 1 to 20 values, each with its price (every other value "
            "has the metric's)",
        ),
        (
            Dimension("model", (ValuePrice("a", GPT5),) * (MAX_DIMENSION_PRICES + 1)),
            "dimension.prices",
            "lists 1 to 20 values",
        ),
        (
            Dimension("model", (ValuePrice("a", GPT5), ValuePrice("a", MINI))),
            "dimension.prices[1].value",
            "'a' is listed twice",
        ),
        (Dimension("model", (ValuePrice("", GPT5),)), "dimension.prices[0].value", ""),
        (Dimension("model", (ValuePrice("x" * 201, GPT5),)), "dimension.prices[0].value", ""),
        (
            Dimension("model", (ValuePrice("a", GPT5), ValuePrice("b", Price(PriceModel.VOLUME)))),
            "dimension.prices[1].tiers",
            "a volume price has 1 to 20 tiers",
        ),
        (
            Dimension("model", (ValuePrice("a", Price(unit_price=D("-1"))),)),
            "dimension.prices[0].overage_unit_price",
            "an amount from 0",
        ),
        (
            Dimension("model", (ValuePrice("a", Price(unit_size=0)),)),
            "dimension.prices[0].overage_unit_size",
            "from 1 to",
        ),
    ],
)
def test_a_dimension_is_refused_naming_the_part_that_is_wrong(
    dimension: Dimension, field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_dimension(dimension)
    assert refused.value.details["field"] == field
    assert words in str(refused.value)


def test_the_most_values_a_dimension_may_list_is_accepted() -> None:
    most = tuple(ValuePrice(f"v{n}", GPT5) for n in range(MAX_DIMENSION_PRICES - 1))
    most += (ValuePrice("v" * MAX_VALUE_LENGTH, GPT5),)
    assert check_dimension(Dimension("m.a:b-c_d", most)).prices == most
    assert MODEL.values() == ["gpt-5", "gpt-5-mini"]


PRICES = st.sampled_from(
    [
        OTHERS,
        GPT5,
        MINI,
        Price(PriceModel.PACKAGE, D("4.00"), 50_000),
        Price(PriceModel.VOLUME, unit_size=1_000, tiers=MINI.tiers),
    ]
)


@given(
    PRICES,
    PRICES,
    PRICES,
    st.integers(0, 10**9),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 10**9)),
    st.integers(0, 10**9),
)
def test_the_most_a_split_could_cost_is_never_less_than_its_lines(
    own: Price, a: Price, b: Price, used: int, by_value: dict[str, int], included: int
) -> None:
    dimension = Dimension("model", (ValuePrice("a", a), ValuePrice("b", b)))
    split = shares(own, dimension, used, by_value, included)
    billed = sum((share.cost().amount for share in split), D(0))
    assert billed <= most_cost((own, a, b), max(used - included, 0))


def test_the_most_is_every_unit_at_the_dearest_rate_and_every_fee() -> None:
    assert most_cost((OTHERS, GPT5), 0) == D("0.00")
    assert most_cost((GPT5,), 1) == D("0.01")  # 0.0001, and a cent of rounding
    # 10,000 x 0.10 / 1,000, and a cent for each price
    assert most_cost((OTHERS, GPT5), 10_000) == D("1.02")
    # mini's dearest tier 0.02 is below 0.05; its flat fee counts
    assert most_cost((OTHERS, MINI), 10_000) == D("1.52")
    assert stored_dimension(dimension_text(MODEL) or "") == (GPT5, MINI)
