"""The sandbox clock's rules: steps, calendar months, forward-only moves, the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing_kernel.errors import InvalidInput
from billing_kernel.sandbox.rules import (
    MAX_MOVE,
    MovableClock,
    Step,
    Unit,
    advanced,
    offset_to,
    parse_step,
)

NOW = datetime(2026, 12, 2, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("1 month", Step(1, Unit.MONTH)),
        ("2 months", Step(2, Unit.MONTH)),
        ("3 days", Step(3, Unit.DAY)),
        ("1 week", Step(1, Unit.WEEK)),
        ("12 hours", Step(12, Unit.HOUR)),
        ("30 minutes", Step(30, Unit.MINUTE)),
        (" 1month ", Step(1, Unit.MONTH)),
        ("9999 days", Step(9999, Unit.DAY)),
    ],
)
def test_a_step_is_a_whole_number_and_a_unit(text: str, step: Step) -> None:
    assert parse_step(text) == step


@pytest.mark.parametrize(
    "text", ["0 days", "month", "1 year", "-1 day", "1.5 days", "10000 days", "", None, 3, "1 d"]
)
def test_anything_else_is_refused_naming_by(text: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_step(text)
    assert refused.value.details["field"] == "by"
    assert refused.value.message == (
        "by must be a whole number from 1 and a unit: minutes, hours, days, weeks or months "
        f"(e.g. '1 month'), got {text!r:.40}"
    )


def test_a_step_describes_itself() -> None:
    assert (Step(1, Unit.MONTH).describe(), Step(3, Unit.DAY).describe()) == ("1 month", "3 days")


def test_fixed_units_add_their_length() -> None:
    assert advanced(NOW, Step(30, Unit.MINUTE)) == NOW + timedelta(minutes=30)
    assert advanced(NOW, Step(12, Unit.HOUR)) == NOW + timedelta(hours=12)
    assert advanced(NOW, Step(3, Unit.DAY)) == NOW + timedelta(days=3)
    assert advanced(NOW, Step(2, Unit.WEEK)) == NOW + timedelta(days=14)


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (NOW, 1, datetime(2027, 1, 2, 22, 30, tzinfo=UTC)),  # across a year
        (datetime(2027, 1, 31, 9, tzinfo=UTC), 1, datetime(2027, 2, 28, 9, tzinfo=UTC)),
        (datetime(2028, 1, 31, 9, tzinfo=UTC), 1, datetime(2028, 2, 29, 9, tzinfo=UTC)),  # leap
        (datetime(2027, 3, 31, tzinfo=UTC), 13, datetime(2028, 4, 30, tzinfo=UTC)),
        (datetime(2027, 11, 15, tzinfo=UTC), 2, datetime(2028, 1, 15, tzinfo=UTC)),
        (datetime(2027, 12, 1, tzinfo=UTC), 12, datetime(2028, 12, 1, tzinfo=UTC)),
    ],
)
def test_a_month_is_a_calendar_month(start: datetime, months: int, end: datetime) -> None:
    assert advanced(start, Step(months, Unit.MONTH)) == end


def test_the_clock_moves_forward_only_and_not_too_far() -> None:
    ahead = NOW + timedelta(days=3)  # where the clock stands; real time is NOW
    assert offset_to(ahead + timedelta(hours=1), now=ahead, real=NOW) == timedelta(days=3, hours=1)
    assert offset_to(ahead, now=ahead, real=NOW) == timedelta(days=3)  # standing still
    other_zone = (ahead + timedelta(hours=2)).astimezone(timezone(timedelta(hours=-5)))
    assert offset_to(other_zone, now=ahead, real=NOW) == timedelta(days=3, hours=2)
    earlier = (ahead - timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))
    with pytest.raises(InvalidInput) as refused:
        offset_to(earlier, now=ahead, real=NOW)
    assert refused.value.message == (  # both times in UTC
        "the sandbox clock moves forward only: it is 2026-12-05 22:30:00 UTC, "
        "2026-12-05 21:30:00 UTC is before it (a reset returns to real time)"
    )
    assert offset_to(NOW + MAX_MOVE, now=NOW, real=NOW) == MAX_MOVE
    for target, said in [
        (ahead - timedelta(seconds=1), "moves forward only"),
        (NOW + MAX_MOVE + timedelta(seconds=1), f"at most {MAX_MOVE.days} days"),
        (datetime(2027, 1, 1), r"^to must have a time zone \(e.g. 2027-01-01T00:00:00Z\)$"),  # noqa: DTZ001
    ]:
        with pytest.raises(InvalidInput, match=said) as refused:
            offset_to(target, now=ahead, real=NOW)
        assert refused.value.details["field"] == "to"


def test_the_movable_clock_is_real_time_plus_its_offset() -> None:
    clock = MovableClock()
    assert not clock.moved
    assert abs(clock() - datetime.now(UTC)) < timedelta(minutes=1)
    clock.offset = timedelta(days=31)
    assert clock.moved
    assert abs(clock() - datetime.now(UTC) - timedelta(days=31)) < timedelta(minutes=1)
    assert MovableClock(timedelta(hours=1)).moved
