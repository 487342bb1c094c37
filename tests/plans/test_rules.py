"""What a plan an operator defines may hold (plans.rules.validate_plan)."""

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from billing_kernel.errors import InvalidInput, UnknownMetric
from billing_kernel.metrics.rules import Aggregation
from billing_kernel.plans.rules import (
    MAX_PLAN_METRICS,
    MAX_PRICE,
    NOT_INCLUDED,
    Enforcement,
    Plan,
    PlanMetric,
    Policy,
    not_included,
    prices_differ,
    validate_plan,
)
from billing_kernel.pricing.rules import (
    MAX_UNIT_PRICE,
    MAX_UNIT_SIZE,
    Dimension,
    Price,
    PriceModel,
    Tier,
    ValuePrice,
)

CATALOGUE = {
    "tokens": Aggregation.SUM,
    "seats": Aggregation.SEATS,
    **{f"m{n}": Aggregation.SUM for n in range(MAX_PLAN_METRICS + 1)},
}


def plan(**changes: object) -> Plan:
    made = Plan(
        "team",
        "Team",
        "EUR",
        Decimal("79.50"),
        metrics={"tokens": PlanMetric("tokens", 1000, Decimal("0.015"), 1000)},
    )
    return replace(made, **changes)  # type: ignore[arg-type]


TIERS = (Tier(100_000, Decimal("0.02")), Tier(None, Decimal("0.01"), Decimal("5.00")))


def terms(**changes: object) -> dict[str, PlanMetric]:
    return {"tokens": replace(PlanMetric("tokens", 1000), **changes)}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "valid",
    [
        plan(),
        plan(monthly_price=Decimal("0")),
        plan(monthly_price=MAX_PRICE),
        plan(monthly_price=Decimal("1.5")),
        plan(metrics={}),
        plan(metrics=terms(included_quantity=None)),
        plan(metrics=terms(included_quantity=0)),
        plan(metrics=terms(overage_unit_price=MAX_UNIT_PRICE)),
        plan(metrics=terms(overage_unit_price=Decimal("0.000001"))),
        plan(metrics=terms(overage_unit_size=1)),
        plan(metrics=terms(overage_unit_size=MAX_UNIT_SIZE)),
        plan(metrics={f"m{n}": PlanMetric(f"m{n}", 1) for n in range(MAX_PLAN_METRICS)}),
        plan(metrics=terms(policy=Policy(Enforcement.HARD, 1000))),
        plan(metrics=terms(price_model=PriceModel.GRADUATED, tiers=TIERS)),
        plan(metrics=terms(price_model=PriceModel.VOLUME, tiers=TIERS, overage_unit_size=1000)),
        plan(metrics=terms(price_model=PriceModel.PACKAGE, overage_unit_price=Decimal(5))),
    ],
)
def test_plans_within_every_bound_are_taken(valid: Plan) -> None:
    assert validate_plan(valid, CATALOGUE) is valid


@pytest.mark.parametrize(
    ("invalid", "field", "message"),
    [
        (plan(currency="eur"), "currency", "currency must be a three-letter code such as USD"),
        (plan(currency="EU"), "currency", None),
        (plan(currency="EURO"), "currency", None),
        (
            plan(monthly_price=Decimal("-0.01")),
            "monthly_price",
            "monthly_price must be an amount from 0 to 9999999999.99 with at most 2 decimals",
        ),
        (plan(monthly_price=MAX_PRICE + Decimal("0.01")), "monthly_price", None),
        (plan(monthly_price=Decimal("0.001")), "monthly_price", None),
        (plan(monthly_price=Decimal("Infinity")), "monthly_price", None),
        (
            plan(metrics={f"m{n}": PlanMetric(f"m{n}", 1) for n in range(MAX_PLAN_METRICS + 1)}),
            "metrics",
            "a plan names at most 50 metrics",
        ),
        (
            plan(metrics={"tokens": PlanMetric("seats", 1)}),
            "metrics",
            "metric 'tokens' is named 'seats'",
        ),
        (
            plan(metrics=terms(included_quantity=-1)),
            "included_quantity",
            "included_quantity must not be negative",
        ),
        (plan(metrics=terms(overage_unit_price=Decimal("-1"))), "overage_unit_price", None),
        (
            plan(metrics=terms(price_model=PriceModel.GRADUATED)),
            "tiers",
            "a graduated price has 1 to 20 tiers",
        ),
        (
            plan(metrics=terms(tiers=TIERS)),
            "tiers",
            "tiers are for graduated and volume prices, not per_unit",
        ),
        (
            plan(metrics=terms(price_model=PriceModel.VOLUME, tiers=(TIERS[1], TIERS[0]))),
            "tiers[0].up_to",
            None,
        ),
        (
            plan(
                metrics=terms(
                    price_model=PriceModel.VOLUME,
                    tiers=TIERS,
                    overage_unit_price=Decimal("0.01"),
                )
            ),
            "overage_unit_price",
            "a volume price sets its unit price per tier, not in overage_unit_price",
        ),
        (
            plan(metrics=terms(overage_unit_price=Decimal("0.0000001"))),
            "overage_unit_price",
            None,
        ),
        (
            plan(metrics=terms(overage_unit_price=MAX_UNIT_PRICE + 1)),
            "overage_unit_price",
            None,
        ),
        (
            plan(metrics=terms(overage_unit_size=0)),
            "overage_unit_size",
            "overage_unit_size must be from 1 to 1,000,000,000,000",
        ),
        (plan(metrics=terms(overage_unit_size=MAX_UNIT_SIZE + 1)), "overage_unit_size", None),
        (plan(metrics=terms(policy=Policy(Enforcement.HARD, 1001))), "grace_percent", None),
        (
            plan(metrics=terms(policy=Policy(Enforcement.HARD, 0, timedelta(minutes=30)))),
            "grace_period_hours",
            None,
        ),
    ],
)
def test_anything_else_is_refused_naming_the_field(
    invalid: Plan, field: str, message: str | None
) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_plan(invalid, CATALOGUE)
    assert refused.value.details == {"field": field}
    if message is not None:
        assert refused.value.message == message


def test_a_metric_not_in_the_catalogue_is_unknown() -> None:
    with pytest.raises(UnknownMetric) as refused:
        validate_plan(plan(metrics={"nope": PlanMetric("nope", 1)}), CATALOGUE)
    assert (refused.value.message, refused.value.details) == (
        "unknown metric 'nope'",
        {"field": "metrics"},
    )
    assert refused.value.status == 404


def test_a_new_price_or_new_terms_make_a_new_version_and_nothing_else_does() -> None:
    base = plan()
    tokens = base.metrics["tokens"]
    for changed in (
        plan(monthly_price=Decimal("79.51")),
        plan(metrics={}),
        plan(metrics={**base.metrics, "seats": PlanMetric("seats", 3)}),
        plan(metrics={"tokens": replace(tokens, included_quantity=1001)}),
        plan(metrics={"tokens": replace(tokens, included_quantity=None)}),
        plan(metrics={"tokens": replace(tokens, overage_unit_price=Decimal("0.016"))}),
        plan(metrics={"tokens": replace(tokens, overage_unit_size=100)}),
        plan(metrics={"tokens": replace(tokens, price_model=PriceModel.PACKAGE)}),
    ):
        assert prices_differ(base, changed), changed
    for same in (
        plan(name="Team (renamed)", description="new words"),
        plan(metrics={"tokens": replace(tokens, policy=Policy(Enforcement.HARD, 10))}),
        plan(monthly_price=Decimal("79.500")),  # the same amount, written otherwise
        plan(version=7, is_active=False),
    ):
        assert not prices_differ(base, same), same


def test_a_change_of_tiers_makes_a_new_version_and_the_same_tiers_written_otherwise_do_not() -> (
    None
):
    graduated = PlanMetric("tokens", 1000, price_model=PriceModel.GRADUATED, tiers=TIERS)
    base = plan(metrics={"tokens": graduated})
    assert prices_differ(plan(), base)
    fee = (TIERS[0], replace(TIERS[1], flat_fee=Decimal("6.00")))
    ends = (replace(TIERS[0], up_to=99_999), TIERS[1])
    price = (TIERS[0], replace(TIERS[1], unit_price=Decimal("0.011")))
    for tiers in (fee, ends, price, TIERS[1:]):
        assert prices_differ(base, plan(metrics={"tokens": replace(graduated, tiers=tiers)}))
    volume = replace(graduated, price_model=PriceModel.VOLUME)
    assert prices_differ(base, plan(metrics={"tokens": volume}))
    same = (TIERS[0], replace(TIERS[1], flat_fee=Decimal("5")))  # 5.00 written otherwise
    assert not prices_differ(base, plan(metrics={"tokens": replace(graduated, tiers=same)}))


def test_a_change_of_features_makes_a_new_version_and_their_order_does_not() -> None:
    base = plan(features={"sso": True, "max_projects": 5})
    assert not prices_differ(base, plan(features={"max_projects": 5, "sso": True}))
    for changed in (
        plan(features={"sso": True}),
        plan(features={"sso": False, "max_projects": 5}),
        plan(features={"sso": 1, "max_projects": 5}),  # 1 is not true, though Python says ==
        plan(features={"sso": True, "max_projects": "5"}),
        plan(features={"sso": True, "max_projects": 5, "beta": False}),
    ):
        assert prices_differ(base, changed), changed.features
    assert prices_differ(plan(), base)


def test_a_metric_the_plan_does_not_name_gives_none_enforced_hard_and_free() -> None:
    terms = PlanMetric("tokens", 100, Decimal("0.02"), 1000)
    unlimited = PlanMetric("runs", None)
    plan = Plan("p", "P", "USD", Decimal("10"), metrics={"tokens": terms, "runs": unlimited})
    assert plan.allowance("tokens") is terms
    assert plan.allowance("runs") is unlimited  # unlimited only when said
    assert plan.allowance("pages") == not_included("pages")
    assert not_included("pages") == PlanMetric(
        "pages", 0, Decimal("0"), 1, Policy(Enforcement.HARD, 0, None)
    )
    assert not NOT_INCLUDED.has_grace


MODEL = Dimension("model", (ValuePrice("gpt-5", Price(unit_price=Decimal("0.10"))),))


def test_a_sum_or_a_count_may_be_priced_per_value_and_nothing_else_may() -> None:
    priced = plan(metrics={"tokens": PlanMetric("tokens", 1000, dimension=MODEL)})
    assert validate_plan(priced, {**CATALOGUE, "tokens": Aggregation.COUNT}) is priced
    for aggregation in set(Aggregation) - {Aggregation.SUM, Aggregation.COUNT}:
        with pytest.raises(InvalidInput) as refused:
            validate_plan(priced, {**CATALOGUE, "tokens": aggregation})
        assert refused.value.details["field"] == "dimension"
        assert str(refused.value) == (
            f"metric 'tokens' is aggregated by {aggregation}: only a sum or a count is the sum "
            "of its values' usage, so only they may be priced per value"
        )
    wrong = replace(MODEL, property="a b")
    with pytest.raises(InvalidInput) as refused:
        validate_plan(plan(metrics={"tokens": PlanMetric("tokens", 1, dimension=wrong)}), CATALOGUE)
    assert refused.value.details["field"] == "dimension.property"


def test_a_change_of_dimension_makes_a_new_version() -> None:
    base = plan(metrics={"tokens": PlanMetric("tokens", 1000, dimension=MODEL)})
    assert not prices_differ(base, replace(base))
    assert prices_differ(plan(metrics={"tokens": PlanMetric("tokens", 1000)}), base)
    dearer = Dimension("model", (ValuePrice("gpt-5", Price(unit_price=Decimal("0.11"))),))
    assert prices_differ(
        base, plan(metrics={"tokens": PlanMetric("tokens", 1000, dimension=dearer)})
    )
    other = replace(MODEL, property="engine")
    assert prices_differ(
        base, plan(metrics={"tokens": PlanMetric("tokens", 1000, dimension=other)})
    )


def test_a_metric_is_free_only_when_every_value_is() -> None:
    assert PlanMetric("tokens", 1).is_free
    assert not PlanMetric("tokens", 1, dimension=MODEL).is_free
    free_values = Dimension("model", (ValuePrice("gpt-5", Price()),))
    assert PlanMetric("tokens", 1, dimension=free_values).is_free
    assert not PlanMetric("tokens", 1, Decimal("0.01"), dimension=free_values).is_free


def test_a_price_per_value_is_described_value_by_value() -> None:
    assert PlanMetric("tokens", 1, Decimal("0.02"), 1000).describe_price() == "0.02 per 1,000"
    priced = PlanMetric("tokens", 1, Decimal("0.05"), 1000, dimension=MODEL)
    assert priced.describe_price() == "by model: gpt-5 0.10 each; other values 0.05 per 1,000"
