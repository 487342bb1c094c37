"""Metrics are data: a key per counter and per plan limit, so a deployment can add its own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from billing_kernel.common.periods import BillingPeriod

TOKENS = "tokens"
PLAYBOOK_RUNS = "playbook_runs"
SEATS = "seats"

METRIC_KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class Aggregation(StrEnum):
    """How a metric's usage in a period is computed."""

    SUM = "sum"
    """The sum of the quantities of accepted usage events."""
    SEATS = "seats"
    """The number of org members; the counter keeps the period's peak."""


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    name: str
    unit: str
    aggregation: Aggregation = Aggregation.SUM

    @property
    def is_recordable(self) -> bool:
        """Whether usage events may be recorded against it (seats follow membership)."""
        return self.aggregation is Aggregation.SUM


def used_and_peak(metric: Metric, counter: int, members: int | None) -> tuple[int, int | None]:
    """How much of `metric` the org uses now, and for seats the period's peak. A seats metric
    is used by the live member count; its counter keeps the highest count of the period,
    which is never below today's. For a closed period (`members` None) the seats used are
    that peak. Any other metric is its counter, with no peak."""
    if metric.aggregation is Aggregation.SEATS:
        if members is None:
            return counter, counter
        return members, max(members, counter)
    return counter, None


def months_to_carry_seats(
    last_recorded: date | None, current: BillingPeriod
) -> list[BillingPeriod]:
    """The months whose seat peak a membership change writes down before it changes
    anything: those after the last month with a recorded peak (`last_recorded`, its first
    day) and before `current`. No change touched the membership in them, so each had the
    count from before this change throughout. None recorded: the org never had a member
    change, so there is nothing to carry."""
    if last_recorded is None:
        return []
    months = []
    month = BillingPeriod.starting(last_recorded).next()
    while month.key < current.key:
        months.append(month)
        month = month.next()
    return months


def seats_in_month(
    recorded: int | None,
    month: date,
    *,
    current: date,
    last_recorded: date | None,
    members_now: int,
) -> int:
    """The seat peak of the month starting `month`. Every membership change records the
    peak of its month and carries the count into the months before it that had none (see
    `months_to_carry_seats`), so a month without a recorded peak is either after the last
    change (the membership has not changed since: today's count) or before the first one
    (no member yet: 0). The `current` month's peak is never below today's count; a month
    that has not begun has none."""
    if month > current:
        return 0
    if month == current:
        return max(recorded or 0, members_now)
    if recorded is not None:
        return recorded
    if last_recorded is None or month > last_recorded:
        return members_now
    return 0


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric(TOKENS, "LLM tokens", "tokens"),
    Metric(PLAYBOOK_RUNS, "Playbook runs", "runs"),
    Metric(SEATS, "Seats", "seats", Aggregation.SEATS),
)
