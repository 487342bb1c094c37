"""Which way a plan change goes, and when it takes effect."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.plans.rules import Plan


class ChangeKind(StrEnum):
    UPGRADE = "upgrade"
    """To a plan with a higher monthly price: at once."""
    DOWNGRADE = "downgrade"
    """To a plan with a lower monthly price: at the period's end, unless
    BILLING_DOWNGRADE=immediate."""
    LATERAL = "lateral"
    """To another plan (or version) at the same price: at once."""
    NONE = "none"
    """To the plan and version the org is on: nothing changes."""


class DowngradeTiming(StrEnum):
    PERIOD_END = "period_end"
    IMMEDIATE = "immediate"


def classify(current: Plan, new: Plan) -> ChangeKind:
    """Which way moving from `current` to `new` goes, by monthly price."""
    if (current.slug, current.version) == (new.slug, new.version):
        return ChangeKind.NONE
    if new.monthly_price > current.monthly_price:
        return ChangeKind.UPGRADE
    if new.monthly_price < current.monthly_price:
        return ChangeKind.DOWNGRADE
    return ChangeKind.LATERAL


def takes_effect(kind: ChangeKind, now: datetime, timing: DowngradeTiming) -> datetime:
    """When a change of `kind` asked for `now` takes effect: a downgrade at the end of the
    period (with DowngradeTiming.PERIOD_END), anything else at once."""
    if kind is ChangeKind.DOWNGRADE and timing is DowngradeTiming.PERIOD_END:
        return BillingPeriod.containing(now).end
    return now
