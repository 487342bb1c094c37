"""The keys several capabilities share, by name: a usage counter's and an org month's."""

from __future__ import annotations

from datetime import date
from typing import NamedTuple


class MonthKey(NamedTuple):
    """One org's billing period, by its first day."""

    org_id: str
    period_start: date


class CounterKey(NamedTuple):
    """One usage counter: an org's usage of a metric in a billing period (its first day)."""

    org_id: str
    period_start: date
    metric: str
