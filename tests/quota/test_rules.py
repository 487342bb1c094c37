from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing_kernel.common.money import money_text
from billing_kernel.plans.rules import Enforcement, Plan, PlanMetric
from billing_kernel.quota.rules import LimitOverride, decide, effective_terms, percent_used

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("used", "limit", "expected"),
    [
        (0, 1000, Decimal("0.0")),
        (799, 1000, Decimal("79.9")),
        (800, 1000, Decimal("80.0")),
        (9999, 10000, Decimal("99.9")),
        (99_995, 100_000, Decimal("99.9")),  # floored: never shows 100 % before it is reached
        (1000, 1000, Decimal("100.0")),
        (1, 1, Decimal("100.0")),  # the smallest limit still has a bar
        (1500, 1000, Decimal("150.0")),
        (5, None, None),  # unlimited: no bar
        (5, 0, None),  # nothing included: no bar
    ],
)
def test_percent_used(used: int, limit: int | None, expected: Decimal | None) -> None:
    assert percent_used(used, limit) == expected


def test_decision_is_soft_and_says_whether_the_limit_is_or_would_be_exceeded() -> None:
    within = decide("tokens", used=900, limit=1000, requested=100, now=NOW)
    assert (within.metric, within.requested, within.used, within.limit) == (
        "tokens",
        100,
        900,
        1000,
    )
    assert (within.allowed, within.soft_limit_exceeded, within.would_exceed) == (True, False, False)
    assert within.remaining == 100
    assert within.enforcement is Enforcement.SOFT

    crossing = decide("tokens", used=900, limit=1000, requested=101, now=NOW)
    assert (crossing.allowed, crossing.soft_limit_exceeded, crossing.would_exceed) == (
        True,
        False,
        True,
    )

    over = decide("tokens", used=1200, limit=1000, requested=1, now=NOW)
    assert (over.allowed, over.soft_limit_exceeded, over.remaining) == (True, True, 0)

    unlimited = decide("tokens", used=10**15, limit=None, requested=10**12, now=NOW)
    assert (unlimited.soft_limit_exceeded, unlimited.would_exceed, unlimited.remaining) == (
        False,
        False,
        None,
    )


def test_effective_limit_prefers_the_org_override_and_none_lifts_it() -> None:
    plan = Plan(
        slug="p",
        name="P",
        currency="USD",
        monthly_price=Decimal("1.00"),
        metrics={"tokens": PlanMetric("tokens", 1000)},
    )

    def limit(metric: str, overrides: dict[str, LimitOverride]) -> int | None:
        return effective_terms(plan, metric, overrides).limit

    def only(n: int | None) -> LimitOverride:
        return LimitOverride(included_quantity=n, sets_included=True)

    assert limit("tokens", {}) == 1000
    assert limit("tokens", {"tokens": only(5000)}) == 5000
    assert limit("tokens", {"tokens": only(None)}) is None
    assert limit("tokens", {"other": only(5)}) == 1000
    assert limit("tokens", {"tokens": LimitOverride(included_quantity=5)}) == 1000  # not set
    assert limit("custom_metric", {}) == 0  # not in the plan: none of it
    assert effective_terms(plan, "custom_metric", {}).policy.mode is Enforcement.HARD
    assert limit("custom_metric", {"custom_metric": only(7)}) == 7
    assert limit("custom_metric", {"custom_metric": only(None)}) is None


@pytest.mark.parametrize(
    ("amount", "thousands", "written"),
    [
        ("49", False, "49.00"),
        ("49.00", False, "49.00"),
        ("0.1", False, "0.10"),
        ("0.015", False, "0.015"),  # a unit price keeps its digits: never a cent off
        ("0.0150", False, "0.015"),
        ("1E+3", False, "1000.00"),
        ("-3.5", False, "-3.50"),
        ("1234.5", True, "1,234.50"),
        ("1234567.125", True, "1,234,567.125"),
        ("999.99", True, "999.99"),
    ],
)
def test_money_is_written_with_two_decimals_or_all_it_has(
    amount: str, thousands: bool, written: str
) -> None:
    assert money_text(Decimal(amount), thousands=thousands) == written


def test_money_has_no_thousands_separator_unless_asked() -> None:
    assert money_text(Decimal("1234.5")) == "1234.50"  # the API's and the CLI's form
