"""Metrics are data: a key per counter and per plan limit, so a deployment can add its own."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

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


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric(TOKENS, "LLM tokens", "tokens"),
    Metric(PLAYBOOK_RUNS, "Playbook runs", "runs"),
    Metric(SEATS, "Seats", "seats", Aggregation.SEATS),
)
