"""Billing periods: calendar months in UTC, half-open `[start, end)`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from billing_kernel_sdk.fields import ensure_utc

__all__ = ["LAST_YEAR", "BillingPeriod", "days_until", "ensure_utc", "representable"]

LAST_YEAR = 9998
"""The last year a caller's time or month may fall in: the month after it must exist too
(Python's dates end with the year 9999)."""


def representable(moment: datetime) -> datetime:
    """A caller's time in UTC, if the kernel can compute with it: ValueError when it lies
    outside the years 1 to LAST_YEAR once in UTC (0001-01-01T00:00:00+01:00 is in the year
    0)."""
    try:
        utc: datetime | None = ensure_utc(moment)
    except (OverflowError, ValueError):  # its UTC would be the year 0 or 10000
        utc = None
    if utc is None or utc.year > LAST_YEAR:
        raise ValueError(f"must be a time from 0001-01-01T00:00:00Z to {LAST_YEAR}-12-31T23:59:59Z")
    return utc


def days_until(end: datetime, now: datetime) -> int:
    """Whole or partial days from `now` to `end`: 1 for a second left, 0 once `end` passed."""
    return max(0, math.ceil((end - ensure_utc(now)) / timedelta(days=1)))


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """One calendar month in UTC. `start` is included, `end` is not."""

    start: datetime
    end: datetime

    @classmethod
    def containing(cls, moment: datetime) -> BillingPeriod:
        """The month that `moment` falls in."""
        utc = ensure_utc(moment)
        return cls.starting(date(utc.year, utc.month, 1))

    @classmethod
    def starting(cls, first_day: date) -> BillingPeriod:
        """The month whose first day is `first_day`."""
        if first_day.day != 1:
            raise ValueError(f"a billing period starts on the first of a month, not {first_day}")
        start = datetime(first_day.year, first_day.month, 1, tzinfo=UTC)
        if first_day.month == 12:
            end = datetime(first_day.year + 1, 1, 1, tzinfo=UTC)
        else:
            end = datetime(first_day.year, first_day.month + 1, 1, tzinfo=UTC)
        return cls(start=start, end=end)

    @classmethod
    def parse(cls, text: str) -> BillingPeriod:
        """The month written `YYYY-MM` (ValueError for anything else)."""
        match = re.fullmatch(r"([0-9]{4})-([0-9]{2})", text)
        if match is None:
            raise ValueError(f"a month is written YYYY-MM, not {text!r}")
        year, month = int(match[1]), int(match[2])
        if year < 1 or not 1 <= month <= 12:
            raise ValueError(f"no such month: {text!r}")
        if year > LAST_YEAR:
            raise ValueError(f"no such month: {text!r} (months run to {LAST_YEAR}-12)")
        return cls.starting(date(year, month, 1))

    @property
    def label(self) -> str:
        """The month as `YYYY-MM`, as the API writes it."""
        return f"{self.start.year:04d}-{self.start.month:02d}"

    @property
    def key(self) -> date:
        """The first day of the month: how the period is stored."""
        return self.start.date()

    @property
    def last_day(self) -> date:
        """The last calendar day inside the period."""
        return (self.end - timedelta(days=1)).date()

    @property
    def days(self) -> int:
        """How many days the month has."""
        return (self.end - self.start).days

    def contains(self, moment: datetime) -> bool:
        return self.start <= ensure_utc(moment) < self.end

    def previous(self) -> BillingPeriod:
        return BillingPeriod.containing(self.start - timedelta(microseconds=1))

    def next(self) -> BillingPeriod:
        return BillingPeriod.containing(self.end)

    def days_left(self, now: datetime) -> int:
        """Whole or partial days from `now` to the end of the period (0 once it has ended)."""
        return days_until(self.end, now)
