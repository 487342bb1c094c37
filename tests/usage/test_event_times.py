"""Every event time the API's JSON parser accepts is counted or refused per event, never a
failure of the batch: property-tested over the parser's whole range (years 1 to 9999,
offsets up to ±23:59, fractions of a second)."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.errors import InvalidInput
from billing_kernel.metrics.rules import DEFAULT_METRICS
from billing_kernel.usage.rules import EventTimeWindow, new_usage_event
from billing_kernel.usage.schemas import UsageEventIn

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
WINDOW = EventTimeWindow(max_clock_skew=timedelta(minutes=5), max_age=timedelta(days=35))
CATALOGUE = {m.key: m for m in DEFAULT_METRICS}
OFFSET_MINUTES = st.integers(-(24 * 60 - 1), 24 * 60 - 1)
"""Every offset the parser accepts: up to ±23:59."""


def rfc3339(wall: datetime, offset_minutes: int, zulu: bool) -> str:
    if zulu and offset_minutes == 0:
        return wall.isoformat() + "Z"
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return f"{wall.isoformat()}{sign}{hours:02d}:{minutes:02d}"


YEAR_1 = datetime.min  # noqa: DTZ901 (wall-clock arithmetic: naive on purpose)
EDGES = [
    (datetime.min, 60, False),  # noqa: DTZ901
    (datetime.max, -60, False),  # noqa: DTZ901
    (datetime.max, 0, True),  # noqa: DTZ901
    (NOW.replace(tzinfo=None) - timedelta(days=35), 0, True),
]


@given(st.one_of(st.sampled_from(EDGES), st.tuples(st.datetimes(), OFFSET_MINUTES, st.booleans())))
def test_a_parsed_event_time_is_counted_or_refused_never_a_crash(
    case: tuple[datetime, int, bool],
) -> None:
    wall, offset_minutes, zulu = case
    text = rfc3339(wall, offset_minutes, zulu)
    parsed = UsageEventIn.model_validate(
        {
            "org_id": "o",
            "metric": "tokens",
            "quantity": 1,
            "idempotency_key": "k",
            "occurred_at": text,
        }
    )
    assert parsed.occurred_at is not None
    assert parsed.occurred_at.replace(tzinfo=None) == wall
    instant = (wall - YEAR_1) - timedelta(minutes=offset_minutes)
    now = NOW.replace(tzinfo=None) - YEAR_1
    fields = parsed.model_dump()
    if now - timedelta(days=35) <= instant <= now + timedelta(minutes=5):
        event = new_usage_event(**fields, received_at=NOW, catalogue=CATALOGUE, window=WINDOW)
        assert event.occurred_at == parsed.occurred_at
        assert event.occurred_at.tzinfo is UTC
    else:
        with pytest.raises(InvalidInput) as refused:
            new_usage_event(**fields, received_at=NOW, catalogue=CATALOGUE, window=WINDOW)
        assert refused.value.details["field"] == "occurred_at"
