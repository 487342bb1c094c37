"""The sandbox clock's rules: how far a move may go, what "1 month" from a moment is, and
the clock itself (real time plus an offset)."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from billing_kernel.errors import InvalidInput

MAX_MOVE = timedelta(days=2 * 366)
"""How far past real time the sandbox clock may go."""


class Unit(StrEnum):
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


_FIXED = {
    Unit.MINUTE: timedelta(minutes=1),
    Unit.HOUR: timedelta(hours=1),
    Unit.DAY: timedelta(days=1),
    Unit.WEEK: timedelta(weeks=1),
}
STEP_PATTERN = re.compile(r"^\s*([0-9]{1,4})\s*(minute|hour|day|week|month)s?\s*$")


@dataclass(frozen=True, slots=True)
class Step:
    """How far to move: `amount` whole `unit`s (a month is a calendar month)."""

    amount: int
    unit: Unit

    def describe(self) -> str:
        return f"{self.amount} {self.unit}{'' if self.amount == 1 else 's'}"


def parse_step(text: object) -> Step:
    """ "1 month", "2 weeks", "3 days", "12 hours", "30 minutes" (singular or plural), or
    InvalidInput naming `by`."""
    found = STEP_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if found is None or int(found.group(1)) == 0:
        raise InvalidInput(
            "by must be a whole number from 1 and a unit: minutes, hours, days, weeks or "
            f"months (e.g. '1 month'), got {text!r:.40}",
            field="by",
        )
    return Step(int(found.group(1)), Unit(found.group(2)))


def advanced(moment: datetime, step: Step) -> datetime:
    """`moment` moved forward by `step`; a month keeps the day of the month where the
    target month has it (31 January + 1 month is 28 or 29 February) and the time of day."""
    if step.unit is not Unit.MONTH:
        return moment + _FIXED[step.unit] * step.amount
    months = moment.month - 1 + step.amount
    year, month = moment.year + months // 12, months % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def offset_to(target: datetime, *, now: datetime, real: datetime) -> timedelta:
    """The offset from real time (`real`) that puts the clock at `target`; InvalidInput
    when `target` is before the clock's `now` (the clock moves forward only; a reset
    returns to real time) or more than MAX_MOVE past real time."""
    if target.tzinfo is None:
        raise InvalidInput("to must have a time zone (e.g. 2027-01-01T00:00:00Z)", field="to")
    target = target.astimezone(UTC)  # as the message writes it
    if target < now:
        raise InvalidInput(
            f"the sandbox clock moves forward only: it is {now:%Y-%m-%d %H:%M:%S} UTC, "
            f"{target:%Y-%m-%d %H:%M:%S} UTC is before it (a reset returns to real time)",
            field="to",
        )
    if target - real > MAX_MOVE:
        raise InvalidInput(
            f"the sandbox clock goes at most {MAX_MOVE.days} days past real time", field="to"
        )
    return target - real


class MovableClock:
    """Real time plus an offset: the kernel's clock in dev mode. The offset is the
    database's (`SandboxService.refresh` reads it); zero until it is moved."""

    __slots__ = ("offset",)

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    @property
    def moved(self) -> bool:
        return self.offset != timedelta(0)
