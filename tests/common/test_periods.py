from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.common.periods import BillingPeriod, representable

MICRO = timedelta(microseconds=1)


def test_last_microsecond_of_a_month_and_first_of_the_next_are_different_periods() -> None:
    last = datetime(2026, 4, 30, 23, 59, 59, 999_999, tzinfo=UTC)
    assert BillingPeriod.containing(last).key == date(2026, 4, 1)
    assert BillingPeriod.containing(last + MICRO).key == date(2026, 5, 1)


def test_december_rolls_into_january_of_the_next_year() -> None:
    december = BillingPeriod.containing(datetime(2025, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC))
    assert (december.start, december.end) == (
        datetime(2025, 12, 1, tzinfo=UTC),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert december.next().key == date(2026, 1, 1)
    assert december.next().previous() == december


def test_leap_february_has_29_days_and_ordinary_february_28() -> None:
    assert BillingPeriod.starting(date(2024, 2, 1)).last_day == date(2024, 2, 29)
    assert BillingPeriod.starting(date(2025, 2, 1)).last_day == date(2025, 2, 28)
    assert [BillingPeriod.starting(date(2024, m, 1)).days for m in (1, 2, 4, 12)] == [
        31,
        29,
        30,
        31,
    ]
    assert BillingPeriod.starting(date(2025, 2, 1)).days == 28
    assert BillingPeriod.containing(datetime(2024, 2, 29, 23, 59, tzinfo=UTC)).key == date(
        2024, 2, 1
    )


def test_time_in_another_zone_is_placed_by_its_utc_instant() -> None:
    # 23:30 on 31 May in New York (UTC-4) is already June in UTC.
    new_york = timezone(timedelta(hours=-4))
    moment = datetime(2026, 5, 31, 23, 30, tzinfo=new_york)
    assert BillingPeriod.containing(moment).key == date(2026, 6, 1)


def test_naive_datetimes_are_refused_not_guessed() -> None:
    with pytest.raises(ValueError, match="timezone"):
        BillingPeriod.containing(datetime(2026, 5, 1))  # noqa: DTZ001


def test_a_period_starts_on_the_first() -> None:
    with pytest.raises(ValueError, match="first of a month"):
        BillingPeriod.starting(date(2026, 5, 2))


def test_days_left_counts_partial_days_and_stops_at_zero() -> None:
    may = BillingPeriod.starting(date(2026, 5, 1))
    assert may.days_left(datetime(2026, 5, 1, tzinfo=UTC)) == 31
    assert may.days_left(datetime(2026, 5, 31, 23, 0, tzinfo=UTC)) == 1
    assert may.days_left(datetime(2026, 6, 2, tzinfo=UTC)) == 0


moments = st.datetimes(
    min_value=datetime(1970, 1, 1),  # noqa: DTZ001 (hypothesis bounds are naive)
    max_value=datetime(9998, 12, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@given(moments)
def test_every_moment_lies_in_exactly_its_half_open_month(moment: datetime) -> None:
    period = BillingPeriod.containing(moment)
    assert period.contains(moment)
    assert period.start <= moment < period.end
    assert not period.next().contains(moment)
    assert not period.previous().contains(moment)
    assert period.start.day == 1
    assert period.next().start == period.end
    assert BillingPeriod.containing(period.end - MICRO) == period


def test_a_month_is_parsed_from_and_written_as_yyyy_mm() -> None:
    assert BillingPeriod.parse("2026-02") == BillingPeriod.starting(date(2026, 2, 1))
    assert BillingPeriod.parse("2026-01").key == date(2026, 1, 1)  # the first month is a month
    assert BillingPeriod.parse("0001-12").label == "0001-12"
    assert BillingPeriod.parse("2026-11").label == "2026-11"
    assert BillingPeriod.starting(date(987, 3, 1)).label == "0987-03"
    assert BillingPeriod.parse("9998-12").end == datetime(9999, 1, 1, tzinfo=UTC)
    for wrong in ("2026-13", "2026-00", "0000-05", "9999-01", "9999-12"):
        with pytest.raises(ValueError, match="no such month"):
            BillingPeriod.parse(wrong)
    for wrong in (
        "2026-1",
        "26-01",
        "2026/01",
        "2026-01-01",
        " 2026-01",
        "\uff12\uff10\uff12\uff16-01",
        "",
    ):
        with pytest.raises(ValueError, match="YYYY-MM"):
            BillingPeriod.parse(wrong)


def test_a_callers_time_is_taken_in_utc_only_where_its_month_and_the_next_exist() -> None:
    ahead, behind = timezone(timedelta(hours=1)), timezone(timedelta(hours=-1))
    assert representable(datetime(1, 1, 1, 1, tzinfo=ahead)) == datetime(1, 1, 1, tzinfo=UTC)
    assert representable(datetime(9998, 12, 31, 22, 59, tzinfo=behind)) == datetime(
        9998, 12, 31, 23, 59, tzinfo=UTC
    )
    assert representable(datetime(2026, 5, 1, 2, tzinfo=ahead)).tzinfo is UTC
    for wrong in (
        datetime(1, 1, 1, tzinfo=ahead),  # the year 0 in UTC
        datetime(9998, 12, 31, 23, 30, tzinfo=behind),  # 9999 in UTC
        datetime(9999, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=behind),
    ):
        with pytest.raises(ValueError, match="from 0001-01-01T00:00:00Z to 9998-12-31T23:59:59Z"):
            representable(wrong)
