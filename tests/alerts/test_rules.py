"""The pure rules of usage alerts: thresholds, when usage reaches them, what a change of
limit does to them, and the events that say so."""

from datetime import UTC, date, datetime

import pytest

from billing_kernel.alerts.rules import (
    BLOCKED,
    DEFAULT_THRESHOLDS,
    MAX_PERCENT,
    MAX_QUANTITY,
    MAX_THRESHOLDS,
    AlertFacts,
    Threshold,
    alert_event,
    crossed_by,
    format_thresholds,
    parse_threshold,
    parse_thresholds,
    reached,
    standing,
    threshold,
    threshold_set,
)
from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import Event, EventType, event_id
from billing_kernel.invoices.rules import close_failed_event

P80, P100, Q5000 = Threshold(percent=80), Threshold(percent=100), Threshold(quantity=5000)


def test_a_threshold_is_written_as_its_key_and_described_in_words() -> None:
    assert (P80.key, Q5000.key) == ("80%", "5000")
    assert (P80.describe(), Q5000.describe()) == ("80 %", "5,000 units")


@pytest.mark.parametrize(
    ("limit", "at"),
    [(500, 400), (1000, 800), (3, 3), (1, 1), (0, 1), (999, 800), (10**15, 8 * 10**14)],
)
def test_a_percentage_is_reached_at_its_share_of_the_limit_rounded_up(limit: int, at: int) -> None:
    assert P80.at(limit) == at


def test_a_quantity_is_reached_at_itself_and_a_percentage_of_no_limit_never() -> None:
    assert Q5000.at(None) == 5000
    assert Q5000.at(10) == 5000
    assert P80.at(None) is None
    assert Threshold(percent=150).at(200) == 300
    assert P100.at(0) == 1  # nothing included: the first unit reaches 100 %


def test_reached_includes_a_threshold_from_its_exact_quantity() -> None:
    thresholds = (P80, P100, Q5000)
    assert reached(0, 0, thresholds) == []
    assert reached(399, 500, thresholds) == []
    assert reached(400, 500, thresholds) == [P80]
    assert reached(500, 500, thresholds) == [P80, P100]
    assert reached(4999, None, thresholds) == []
    assert reached(5000, None, thresholds) == [Q5000]
    assert reached(1, 0, (P80,)) == [P80]


def test_a_write_crosses_only_what_it_went_across() -> None:
    thresholds = (P80, P100, Q5000)
    assert crossed_by(400, 1, 500, thresholds) == [P80]  # from 399
    assert crossed_by(401, 1, 500, thresholds) == []  # from 400: already there
    assert crossed_by(500, 101, 500, thresholds) == [P80, P100]  # from 399
    assert crossed_by(500, 100, 500, thresholds) == [P100]  # from 400
    assert crossed_by(6000, 1, 500, thresholds) == []
    assert crossed_by(5000, 1, None, thresholds) == [Q5000]
    assert crossed_by(5000, 0, None, thresholds) == []  # nothing added: nothing crossed
    assert crossed_by(6000, None, 500, thresholds) == [P80, P100, Q5000]  # a peak: all


@pytest.mark.parametrize(
    ("kwargs", "made"),
    [
        ({"percent": 1}, Threshold(percent=1)),
        ({"percent": MAX_PERCENT}, Threshold(percent=MAX_PERCENT)),
        ({"quantity": 1}, Threshold(quantity=1)),
        ({"quantity": MAX_QUANTITY}, Threshold(quantity=MAX_QUANTITY)),
    ],
)
def test_thresholds_at_their_bounds_are_taken(kwargs: dict[str, int], made: Threshold) -> None:
    assert threshold(**kwargs) == made


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"percent": 80, "quantity": 5},
        {"percent": 0},
        {"percent": MAX_PERCENT + 1},
        {"quantity": 0},
        {"quantity": MAX_QUANTITY + 1},
        {"percent": True},
        {"percent": 80.0},
        {"quantity": "5"},
    ],
)
def test_invalid_thresholds_are_refused_naming_the_field(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as refused:
        threshold(**kwargs)
    assert refused.value.details["field"] == "thresholds"


def test_the_refusals_say_what_a_threshold_is() -> None:
    with pytest.raises(InvalidInput, match=r"^a threshold has either a percent or a quantity$"):
        threshold()
    with pytest.raises(InvalidInput, match="percent is a whole number from 1 to 1,000"):
        threshold(percent=0)
    with pytest.raises(InvalidInput, match="quantity is a whole number from 1 to"):
        threshold(quantity=0)


@pytest.mark.parametrize(("text", "made"), [("80%", P80), ("5000", Q5000), ("1%", Threshold(1))])
def test_a_threshold_is_read_from_its_key(text: str, made: Threshold) -> None:
    assert parse_threshold(text) == made


@pytest.mark.parametrize("text", ["", "%", "8o%", "-5", "80%%", "٨٠%", " 80%", "0", "1001%"])
def test_anything_else_is_not_a_threshold(text: str) -> None:
    with pytest.raises(InvalidInput, match="threshold") as refused:
        parse_threshold(text)
    assert refused.value.details["field"] == "thresholds"


def test_text_that_is_no_number_is_named_in_the_refusal() -> None:
    with pytest.raises(InvalidInput, match=r"^not a threshold: '8o%'$") as refused:
        parse_threshold("8o%")
    assert refused.value.details == {"field": "thresholds"}


def test_a_set_of_thresholds_is_distinct_and_ordered_percentages_first() -> None:
    given = [Q5000, P100, Threshold(quantity=10), P80, P100]
    assert threshold_set(given) == (P80, P100, Threshold(quantity=10), Q5000)
    assert threshold_set([]) == ()
    percents = [Threshold(percent=p) for p in (100, 90, 150, 80, 50, 120, 95)]
    assert threshold_set(percents) == tuple(sorted(percents, key=lambda t: t.percent or 0))
    at_most = [Threshold(quantity=n) for n in range(1, MAX_THRESHOLDS + 1)]
    assert len(threshold_set(at_most)) == MAX_THRESHOLDS
    with pytest.raises(InvalidInput, match=f"^at most {MAX_THRESHOLDS} thresholds") as refused:
        threshold_set([*at_most, Threshold(quantity=99)])
    assert refused.value.details == {"field": "thresholds"}


def test_thresholds_are_stored_as_their_keys_joined() -> None:
    assert format_thresholds([P100, Q5000, P80]) == "80%,100%,5000"
    assert parse_thresholds("80%,100%,5000") == (P80, P100, Q5000)
    assert parse_thresholds("") == ()
    assert parse_thresholds(DEFAULT_THRESHOLDS) == (P80, P100)
    assert format_thresholds([]) == ""


def test_a_change_crosses_what_usage_is_now_over_and_resolves_what_it_is_under() -> None:
    thresholds = (P80, P100)
    after_upgrade = standing(800, 1000, thresholds, {"80%", "100%"})
    assert after_upgrade.cross == ()
    assert after_upgrade.resolve == ("100%",)
    downgrade = standing(500, 400, thresholds, {"80%"})
    assert downgrade.cross == (P100,)
    assert downgrade.resolve == ()
    removed = standing(500, 500, (P80,), {"80%", "100%", "5000"})
    assert removed.resolve == ("100%", "5000")  # ascending, as they were crossed
    unchanged = standing(450, 500, thresholds, {"80%"})
    assert (unchanged.cross, unchanged.resolve) == ((), ())


def test_a_block_is_not_a_threshold_a_change_resolves() -> None:
    assert standing(0, 500, (P80,), {BLOCKED}).resolve == ()
    assert standing(0, 500, (P80,), {BLOCKED, "80%"}).resolve == ("80%",)


def test_an_events_id_is_the_same_for_the_same_alert_and_differs_for_any_other() -> None:
    args = (EventType.THRESHOLD_CROSSED, "acme", "tokens", "2026-05-01", "80%", 1)
    first = event_id(*args)
    assert first == event_id(*args)
    assert first.startswith("evt_")
    assert len(first) == 36
    others = {
        event_id(EventType.THRESHOLD_RESOLVED, *args[1:]),
        event_id(args[0], "acme2", *args[2:]),
        event_id(*args[:2], "seats", *args[3:]),
        event_id(*args[:3], "2026-06-01", *args[4:]),
        event_id(*args[:4], "100%", 1),
        event_id(*args[:5], 2),
    }
    assert first not in others
    assert len(others) == 6


def test_event_ids_stay_what_they_were_when_first_delivered() -> None:
    """A receiver dedupes by id: an id, once delivered, is the same for ever."""
    crossed = ("acme", "tokens", "2026-05-01", "80%", 1)
    assert event_id(EventType.THRESHOLD_CROSSED, *crossed) == "evt_a77e1f94f6755a23b4f902597b373314"
    failed, failed_id = ("org-2", "2026-04-01", "why"), "evt_ef8a8618738f57c9b8fd555a8889e2c0"
    assert event_id(EventType.INVOICE_CLOSE_FAILED, *failed) == failed_id
    made = close_failed_event("org-2", date(2026, 4, 1), "why", datetime(2026, 5, 3, tzinfo=UTC))
    assert made.event_id == failed_id


NOW = datetime(2026, 5, 15, 12, 30, 5, tzinfo=UTC)


def test_a_crossing_event_carries_the_documented_payload() -> None:
    facts = AlertFacts("acme", "tokens", date(2026, 12, 1), "80%", 8123, 10_000, 1)
    event = alert_event(EventType.THRESHOLD_CROSSED, facts, NOW)
    assert event.payload() == {
        "type": "usage.threshold_crossed",
        "id": event_id(EventType.THRESHOLD_CROSSED, "acme", "tokens", date(2026, 12, 1), "80%", 1),
        "timestamp": "2026-05-15T12:30:05Z",
        "data": {
            "org_id": "acme",
            "metric": "tokens",
            "used": 8123,
            "limit": 10_000,
            "period": {"start": "2026-12-01", "end": "2027-01-01"},
            "threshold": {"key": "80%", "percent": 80, "quantity": 8000},
        },
    }
    assert event.org_id == "acme"
    assert event.created_at == NOW


def test_an_absolute_threshold_and_a_block_say_what_they_are() -> None:
    absolute = AlertFacts("acme", "tokens", date(2026, 5, 1), "5000", 5000, None, 2)
    data = alert_event(EventType.THRESHOLD_CROSSED, absolute, NOW).data
    assert data["threshold"] == {"key": "5000", "percent": None, "quantity": 5000}
    assert data["limit"] is None
    block = AlertFacts("acme", "tokens", date(2026, 5, 1), BLOCKED, 600, 500, 1)
    blocked = alert_event(EventType.QUOTA_BLOCKED, block, NOW)
    assert "threshold" not in blocked.data
    assert blocked.payload()["type"] == "quota.blocked"
    assert blocked.event_id == event_id(
        EventType.QUOTA_BLOCKED, "acme", "tokens", date(2026, 5, 1), BLOCKED, 1
    )


def test_an_events_timestamp_is_utc_with_a_z() -> None:
    event = Event("evt_x", EventType.QUOTA_BLOCKED, None, datetime(2026, 1, 2, tzinfo=UTC), {})
    assert event.payload()["timestamp"] == "2026-01-02T00:00:00Z"


def test_a_close_failure_is_the_operators_event_once_per_org_month_and_reason() -> None:
    now = datetime(2026, 5, 2, tzinfo=UTC)
    event = close_failed_event("acme", date(2026, 4, 1), "too large", now)
    assert (event.org_id, event.event_type, event.created_at) == (
        "acme",
        EventType.INVOICE_CLOSE_FAILED,
        now,
    )
    assert event.for_operators
    assert event.data == {
        "org_id": "acme",
        "period": {"start": "2026-04-01", "end": "2026-05-01"},
        "reason": "too large",
    }
    assert event.event_id.startswith("evt_")
    again = close_failed_event("acme", date(2026, 4, 1), "too large", now.replace(hour=5))
    assert again.event_id == event.event_id  # the closer meets it every round: one event
    others = {
        close_failed_event("other", date(2026, 4, 1), "too large", now).event_id,
        close_failed_event("acme", date(2026, 3, 1), "too large", now).event_id,
        close_failed_event("acme", date(2026, 4, 1), "another reason", now).event_id,
    }
    assert len(others) == 3
    assert event.event_id not in others
    assert event.payload()["type"] == "invoice.close_failed"
