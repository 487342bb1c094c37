"""Usage alerts: thresholds on a metric's usage, when a counter has reached them, and the
events that say so.

A threshold is a percentage of the org's limit ("80%") or an absolute quantity ("5000").
It is reached when the period's usage is at least its quantity (and above zero: no usage
reaches anything). Each (org, metric, period, threshold) is crossed once; a change of limit
or thresholds that puts usage back under it resolves it, and a later crossing in the same
period is a new alert.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import Event, EventType, event_id

MAX_PERCENT = 1000
MAX_QUANTITY = 10**15
MAX_THRESHOLDS = 10
DEFAULT_THRESHOLDS = "80%,100%"
"""What every seeded plan alerts at, for each metric it limits."""

BLOCKED = "blocked"
"""The alert state of a hard limit's block: kept like a threshold's, one per period."""


class AlertKey(NamedTuple):
    """One alert: a threshold (its key, or BLOCKED) of an org's metric in a period."""

    org_id: str
    period_start: date
    metric: str
    threshold: str


class AlertRow(NamedTuple):
    """An alert to cross or resolve, with the figures its event gives."""

    key: AlertKey
    used: int
    limit: int | None


@dataclass(frozen=True, slots=True)
class Threshold:
    """`percent` of the limit, or an absolute `quantity` (exactly one is set)."""

    percent: int | None = None
    quantity: int | None = None

    @property
    def key(self) -> str:
        """How it is written and stored: "80%" or "5000"."""
        return f"{self.percent}%" if self.percent is not None else str(self.quantity)

    def at(self, limit: int | None) -> int | None:
        """The usage that reaches it under `limit` (None: unlimited), at least one unit;
        None when it does not apply (a percentage of no limit)."""
        if self.quantity is not None:
            return self.quantity
        if limit is None or self.percent is None:
            return None
        return max(1, math.ceil(limit * self.percent / 100))

    def describe(self) -> str:
        return f"{self.percent} %" if self.percent is not None else f"{self.quantity:,} units"


def threshold(*, percent: object = None, quantity: object = None) -> Threshold:
    """A valid threshold, or InvalidInput naming what is wrong: exactly one of a whole
    `percent` from 1 to MAX_PERCENT or a whole `quantity` from 1 to MAX_QUANTITY."""
    if (percent is None) == (quantity is None):
        raise InvalidInput("a threshold has either a percent or a quantity", field="thresholds")
    if percent is not None:
        return Threshold(percent=_whole(percent, "percent", MAX_PERCENT))
    return Threshold(quantity=_whole(quantity, "quantity", MAX_QUANTITY))


def _whole(value: object, name: str, most: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise InvalidInput(
            f"a threshold's {name} is a whole number from 1 to {most:,}", field="thresholds"
        )
    return value


def parse_threshold(text: str) -> Threshold:
    """The threshold written `text` ("80%" or "5000"), or InvalidInput."""
    digits = text.removesuffix("%")
    if not digits.isascii() or not digits.isdigit():
        raise InvalidInput(f"not a threshold: {text!r}", field="thresholds")
    value = int(digits)
    return threshold(percent=value) if text.endswith("%") else threshold(quantity=value)


def threshold_set(thresholds: Iterable[Threshold]) -> tuple[Threshold, ...]:
    """Distinct thresholds, percentages first then quantities, each ascending; at most
    MAX_THRESHOLDS."""
    distinct = tuple(sorted(set(thresholds), key=_position))
    if len(distinct) > MAX_THRESHOLDS:
        raise InvalidInput(f"at most {MAX_THRESHOLDS} thresholds per metric", field="thresholds")
    return distinct


def _position(t: Threshold) -> tuple[bool, int, int]:
    return (t.percent is None, t.percent or 0, t.quantity or 0)


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """Thresholds as stored: their keys joined by commas ("" for none)."""
    return threshold_set(parse_threshold(part) for part in text.split(",") if part)


def format_thresholds(thresholds: Iterable[Threshold]) -> str:
    return ",".join(t.key for t in threshold_set(thresholds))


def reached(used: int, limit: int | None, thresholds: Iterable[Threshold]) -> list[Threshold]:
    """The thresholds usage `used` has reached under `limit`."""
    found = []
    for candidate in thresholds:
        at = candidate.at(limit)
        if at is not None and used >= at:
            found.append(candidate)
    return found


def crossed_by(
    used: int, added: int | None, limit: int | None, thresholds: Iterable[Threshold]
) -> list[Threshold]:
    """The thresholds a write of `added` units that took usage to `used` went across: those
    reached now and not before it (every one reached, when `added` is not known)."""
    before = None if added is None else used - added
    return [
        t for t in reached(used, limit, thresholds) if before is None or before < (t.at(limit) or 0)
    ]


@dataclass(frozen=True, slots=True)
class AlertTerms:
    """An org's limit for a metric (None: unlimited) and its thresholds, as stored (their
    keys joined by commas)."""

    limit: int | None
    thresholds: str
    own: bool = False
    """Whether the thresholds are the org's own (else its plan's)."""


@dataclass(frozen=True, slots=True)
class Reading:
    """A counter as a write left it: its usage, what it is judged against, and how much the
    write added (None: not known, as for a new peak)."""

    used: int
    terms: AlertTerms
    added: int | None = None


@dataclass(frozen=True, slots=True)
class Standing:
    """What a change of limit or thresholds does to a counter's alerts."""

    cross: tuple[Threshold, ...]
    """Reached now, not crossed before."""
    resolve: tuple[str, ...]
    """Crossed before (by key), and now not reached or no longer set."""


def standing(
    used: int, limit: int | None, thresholds: Sequence[Threshold], crossed: Iterable[str]
) -> Standing:
    """How the alerts of a counter at `used` stand under `limit` and `thresholds`, given
    the keys of the thresholds crossed and not yet resolved (BLOCKED is not one of them)."""
    now = {t.key: t for t in reached(used, limit, thresholds)}
    before = set(crossed) - {BLOCKED}
    return Standing(
        cross=tuple(t for key, t in now.items() if key not in before),
        resolve=tuple(
            t.key for t in sorted(map(parse_threshold, before - set(now)), key=_position)
        ),
    )


@dataclass(frozen=True, slots=True)
class AlertState:
    """Where one threshold (or a block) of a counter stands in a period."""

    org_id: str
    period_start: date
    metric: str
    threshold: str
    status: str
    crossings: int
    used: int
    limit: int | None
    crossed_at: datetime
    resolved_at: datetime | None
    dismissed_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What an alert event tells."""

    org_id: str
    metric: str
    period: date
    key: str
    """The threshold's key, or BLOCKED."""
    used: int
    limit: int | None
    crossing: int
    """How many times the threshold was crossed in the period, this one included."""


def alert_event(event_type: EventType, facts: AlertFacts, now: datetime) -> Event:
    """The event for a crossing, a resolution or a block."""
    period = BillingPeriod.starting(facts.period)
    data: dict[str, object] = {
        "org_id": facts.org_id,
        "metric": facts.metric,
        "used": facts.used,
        "limit": facts.limit,
        "period": {"start": period.start.date().isoformat(), "end": period.end.date().isoformat()},
    }
    if facts.key != BLOCKED:
        described = parse_threshold(facts.key)
        data["threshold"] = {
            "key": facts.key,
            "percent": described.percent,
            "quantity": described.at(facts.limit),
        }
    return Event(
        event_id=event_id(
            event_type,
            facts.org_id,
            facts.metric,
            facts.period.isoformat(),
            facts.key,
            facts.crossing,
        ),
        event_type=event_type,
        org_id=facts.org_id,
        created_at=now,
        data=data,
    )
