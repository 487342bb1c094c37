"""An org's limits, quota decisions and percentages. Limits are soft in this version: nothing
is blocked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum

from billing_kernel.plans.rules import Plan

PERCENT_STEP = Decimal("0.1")


class Enforcement(StrEnum):
    SOFT = "soft"
    """Usage beyond the limit is reported and allowed (and may be billed as overage)."""


def effective_limit(plan: Plan, metric: str, overrides: Mapping[str, int | None]) -> int | None:
    """The org's limit for `metric` on `plan` (see `limit_after_overrides`)."""
    return limit_after_overrides(plan.allowance(metric).included_quantity, metric, overrides)


def limit_after_overrides(
    plan_included: int | None, metric: str, overrides: Mapping[str, int | None]
) -> int | None:
    """The org's limit for `metric`: its override if it has one, else what its plan
    includes (None: unlimited, also for a metric the plan does not name). An override of
    None lifts the limit for that org."""
    if metric in overrides:
        return overrides[metric]
    return plan_included


def percent_used(used: int, limit: int | None) -> Decimal | None:
    """`used` as a percentage of `limit`, floored to 0.1 so 99.95 % never shows as 100 %.

    None when there is no bar to draw: an unlimited (None) or zero limit.
    """
    if limit is None or limit <= 0:
        return None
    return (Decimal(used) * 100 / Decimal(limit)).quantize(PERCENT_STEP, rounding=ROUND_FLOOR)


def limit_exceeded(used: int, limit: int | None) -> bool:
    """Whether usage is beyond the included quantity (reaching it exactly is not beyond)."""
    return limit is not None and used > limit


def remaining(used: int, limit: int | None) -> int | None:
    return None if limit is None else max(limit - used, 0)


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    """The answer to "may this org use `requested` more of `metric`?"."""

    metric: str
    requested: int
    used: int
    limit: int | None
    remaining: int | None
    soft_limit_exceeded: bool
    would_exceed: bool
    allowed: bool
    enforcement: Enforcement


def decide(metric: str, used: int, limit: int | None, requested: int) -> QuotaDecision:
    """Soft enforcement: always allowed; says whether the limit is or would be exceeded."""
    return QuotaDecision(
        metric=metric,
        requested=requested,
        used=used,
        limit=limit,
        remaining=remaining(used, limit),
        soft_limit_exceeded=limit_exceeded(used, limit),
        would_exceed=limit_exceeded(used + requested, limit),
        allowed=True,
        enforcement=Enforcement.SOFT,
    )
