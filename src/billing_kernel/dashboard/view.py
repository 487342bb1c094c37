"""Presentation rules for the billing page: colours, numbers, money, dates, the chart. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum

from billing_kernel.common.money import money_text

WARNING_PERCENT = Decimal(80)
LIMIT_PERCENT = Decimal(100)
CURRENCY_SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


class Level(StrEnum):
    """How close a metric is to its limit; each comes with a word, never colour alone."""

    OK = "ok"
    NEAR = "near"
    OVER = "over"

    @property
    def word(self) -> str:
        return {"ok": "within limit", "near": "near limit", "over": "at or over limit"}[self]


def level(percent: Decimal | None) -> Level | None:
    """Green below 80 %, yellow from 80 % up to (not including) 100 %, red from 100 %;
    None when there is no bar (an unlimited or zero limit)."""
    if percent is None:
        return None
    if percent >= LIMIT_PERCENT:
        return Level.OVER
    if percent >= WARNING_PERCENT:
        return Level.NEAR
    return Level.OK


def count(value: int) -> str:
    """1234567 -> '1,234,567'."""
    return f"{value:,}"


def compact(value: int) -> str:
    """Short form for tight places: 950 -> '950', 1234 -> '1.2K', 1234567 -> '1.2M'."""
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(value) >= size:
            text = f"{value / size:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return str(value)


def money(amount: Decimal, currency: str) -> str:
    """'$49.00'; a currency without a sign here is written as its code: 'CHF 49.00'."""
    sign = CURRENCY_SIGNS.get(currency)
    digits = money_text(amount, thousands=True)
    return f"{sign}{digits}" if sign else f"{currency} {digits}"


def long_date(day: date) -> str:
    """'2026-11-24 (24 November 2026)': ISO, with the month's name."""
    return f"{day.isoformat()} ({day.day} {day:%B %Y})"


def month_name(day: date) -> str:
    return f"{day:%B %Y}"


def bar_width(percent: Decimal | None) -> str:
    """CSS width of a bar: the percentage, capped at 100 (the text says how far over)."""
    return "0%" if percent is None else f"{min(percent, LIMIT_PERCENT)}%"


@dataclass(frozen=True, slots=True)
class ChartBar:
    x: float
    y: float
    width: float
    height: float
    day: date
    value: int


CHART_WIDTH = 600
CHART_HEIGHT = 120


def chart_bars(days: Sequence[tuple[date, int]]) -> list[ChartBar]:
    """Bars of a daily chart in a CHART_WIDTH x CHART_HEIGHT box, scaled to the busiest day."""
    if not days:
        return []
    peak = max(value for _, value in days) or 1
    slot = CHART_WIDTH / len(days)
    bars = []
    for index, (day, value) in enumerate(days):
        height = round(CHART_HEIGHT * value / peak, 2)
        bars.append(
            ChartBar(
                x=round(index * slot + slot * 0.1, 2),
                y=CHART_HEIGHT - height,
                width=round(slot * 0.8, 2),
                height=height,
                day=day,
                value=value,
            )
        )
    return bars
