from datetime import date
from decimal import Decimal

import pytest

from billing_kernel.dashboard.view import (
    CHART_HEIGHT,
    Level,
    bar_width,
    chart_bars,
    compact,
    count,
    level,
    long_date,
    money,
)


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        ("0", Level.OK),
        ("79.9", Level.OK),
        ("80", Level.NEAR),
        ("99.9", Level.NEAR),
        ("100", Level.OVER),
        ("150", Level.OVER),
    ],
)
def test_colour_thresholds(percent: str, expected: Level) -> None:
    assert level(Decimal(percent)) is expected


def test_unlimited_or_zero_limits_have_no_bar() -> None:
    assert level(None) is None
    assert bar_width(None) == "0%"


def test_each_level_has_a_word_so_colour_is_not_the_only_signal() -> None:
    assert [lvl.word for lvl in Level] == ["within limit", "near limit", "at or over limit"]


def test_bars_are_capped_at_full_width() -> None:
    assert bar_width(Decimal("150.0")) == "100%"
    assert bar_width(Decimal("84.5")) == "84.5%"


@pytest.mark.parametrize(
    ("value", "full", "short"),
    [
        (0, "0", "0"),
        (950, "950", "950"),
        (1_234, "1,234", "1.2K"),
        (1_234_567, "1,234,567", "1.2M"),
        (10_000_000, "10,000,000", "10M"),
        (2_500_000_000, "2,500,000,000", "2.5B"),
    ],
)
def test_numbers_for_people(value: int, full: str, short: str) -> None:
    assert (count(value), compact(value)) == (full, short)


def test_money_and_dates() -> None:
    assert money(Decimal("49.00"), "USD") == "$49.00"
    assert money(Decimal("1234.5"), "EUR") == "€1,234.50"
    assert money(Decimal("12"), "CHF") == "CHF 12.00"
    assert long_date(date(2026, 11, 1)) == "2026-11-01 (1 November 2026)"


def test_chart_bars_scale_to_the_busiest_day() -> None:
    days = [(date(2026, 11, 1), 0), (date(2026, 11, 2), 50), (date(2026, 11, 3), 100)]
    bars = chart_bars(days)
    assert [b.height for b in bars] == [0, CHART_HEIGHT / 2, CHART_HEIGHT]
    assert all(b.y + b.height == CHART_HEIGHT for b in bars)
    assert bars[0].x < bars[1].x < bars[2].x
    assert chart_bars([]) == []
    assert [b.height for b in chart_bars([(date(2026, 11, 1), 0)])] == [0]
