"""How another system's event becomes the kernel's: quantities, times and fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.compat.lago import LAGO_AGGREGATIONS
from billing_kernel.compat.rules import (
    ForeignEvent,
    RefusedBatch,
    batch_of,
    customer_field,
    event_time,
    in_protocol_terms,
    object_field,
    parse_all,
    text_field,
)
from billing_kernel.errors import InvalidInput, OrgNotFound
from billing_kernel.metrics.rules import Aggregation


def test_errors_name_the_properties_as_the_protocol_does() -> None:
    sent = ForeignEvent("org", "tokens", {}, "k", None, properties_field="data")
    bad = InvalidInput("properties.value must be a whole number, got 'x'", field="properties.value")
    renamed = in_protocol_terms(bad, sent)
    assert (renamed.message, renamed.details) == (
        "data.value must be a whole number, got 'x'",
        {"field": "data.value"},
    )
    missing = InvalidInput("metric 'tokens' sums property `value`", field="properties.value")
    assert in_protocol_terms(missing, sent).message == "metric 'tokens' sums property `value`"
    assert in_protocol_terms(missing, sent).details == {"field": "data.value"}
    other = InvalidInput("org_id is required", field="org_id")
    assert in_protocol_terms(other, sent) is other
    plain = OrgNotFound("no org", org_id="org")
    assert in_protocol_terms(plain, sent) is plain
    echoed = InvalidInput(
        "properties.n must be a whole number, got 'properties.x'", field="properties.n"
    )
    assert (
        in_protocol_terms(echoed, sent).message
        == "data.n must be a whole number, got 'properties.x'"
    )
    lago = ForeignEvent("org", "tokens", {}, "k", None)
    assert in_protocol_terms(bad, lago).message == bad.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        ("1700000000", datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (1_700_000_000.25, datetime(2023, 11, 14, 22, 13, 20, 250_000, tzinfo=UTC)),
        ("1700000000.000001", datetime(2023, 11, 14, 22, 13, 20, 1, tzinfo=UTC)),
        ("2026-11-28T10:00:00Z", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("2026-11-28T12:00:00+02:00", datetime(2026, 11, 28, 10, tzinfo=UTC)),
        ("2026-11-28t10:00:00.5z", datetime(2026, 11, 28, 10, 0, 0, 500_000, tzinfo=UTC)),
        ("2026-11-28 10:00:00.123456789Z", datetime(2026, 11, 28, 10, 0, 0, 123_456, tzinfo=UTC)),
        ("1700000000.999999", datetime(2023, 11, 14, 22, 13, 20, 999_999, tzinfo=UTC)),
        ("1700000000.9999995", datetime(2023, 11, 14, 22, 13, 20, 999_999, tzinfo=UTC)),
    ],
)
def test_event_times_as_unix_seconds_or_rfc_3339(value: object, expected: datetime) -> None:
    parsed = event_time(value, "timestamp")
    assert parsed == expected
    if parsed is not None:
        assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [True, "2026-11-28T10:00:00", "2026-11-28", "yesterday", 1e20, "99999999999999", [], "1.5.2"],
)
def test_what_is_not_a_time_names_its_field(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        event_time(value, "time")
    assert refused.value.details["field"] == "time"
    assert refused.value.message.startswith("time ")


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1)))  # noqa: DTZ001
def test_unix_seconds_and_rfc_3339_name_the_same_instant(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    micros = (aware - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    text = f"{micros // 1_000_000}.{micros % 1_000_000:06d}"
    assert event_time(text, "t") == aware
    shifted = aware.astimezone(timezone(timedelta(hours=-5)))
    assert event_time(shifted.isoformat(), "t") == aware


def test_text_and_object_fields() -> None:
    assert text_field("a", "code") == "a"
    for bad in (None, "", 3, ["a"]):
        with pytest.raises(InvalidInput) as refused:
            text_field(bad, "code")
        assert refused.value.details["field"] == "code"
        assert refused.value.message == "code is required (a non-empty string)"
    assert object_field(None, "data") == {}
    assert object_field({"a": 1}, "data") == {"a": 1}
    for bad in ([], "x", 1, {1: 2}):
        with pytest.raises(InvalidInput) as wrong:
            object_field(bad, "data")
        assert wrong.value.details["field"] == "data"
        assert wrong.value.message == "data must be an object"


def test_a_batch_parses_each_event_alone() -> None:
    def parse(raw: object) -> ForeignEvent:
        if raw == "bad":
            raise InvalidInput("bad event", field="x")
        if raw == "boom":
            raise OrgNotFound("not a parse error")
        return ForeignEvent(raw, "tokens", {}, "k", None)

    parsed = parse_all(["a", "bad", "b"], parse)
    assert [p.customer if isinstance(p, ForeignEvent) else p.message for p in parsed] == [
        "a",
        "bad event",
        "b",
    ]
    with pytest.raises(OrgNotFound):  # only invalid input is the event's own fault
        parse_all(["boom"], parse)


def test_a_refused_batch_leads_with_its_first_error() -> None:
    first, second = InvalidInput("one", field="a"), OrgNotFound("two")
    refused = RefusedBatch([(2, first), (5, second)])
    assert refused.first is first
    assert refused.errors == ((2, first), (5, second))
    assert str(refused) == "event 2: one"


def test_a_batch_body_holds_one_to_most_events() -> None:
    assert batch_of({"events": [1, 2]}, most=2) == [1, 2]
    assert batch_of({"data": [1]}, "data") == [1]
    for bad in ({"events": []}, {"events": [1, 2, 3]}, {"events": {}}, [1], None, {"x": [1]}):
        with pytest.raises(InvalidInput) as refused:
            batch_of(bad, most=2)
        assert refused.value.details["field"] == "events"
        assert refused.value.message == "events must be a list of 1 to 2 events"
    assert len(batch_of({"events": list(range(1000))})) == 1000
    with pytest.raises(InvalidInput):
        batch_of({"events": list(range(1001))})


def test_a_customer_id_follows_the_id_rule_and_names_the_protocols_field() -> None:
    assert customer_field("cus_42", "subject") == "cus_42"
    for absent in (None, ""):
        with pytest.raises(InvalidInput, match=r"^subject is required \(a non-empty string\)$"):
            customer_field(absent, "subject")
    for bad in (None, "", " x", "x\x00", "\ud800", 42, "x" * 300):
        with pytest.raises(InvalidInput) as refused:
            customer_field(bad, "external_customer_id")
        assert refused.value.details["field"] == "external_customer_id"


def test_an_event_time_outside_what_the_kernel_computes_with_is_refused_naming_the_field() -> None:
    assert event_time("0001-01-01T01:00:00+01:00", "timestamp") == datetime(1, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInput, match="must be Unix seconds or an RFC 3339 time"):
        event_time("2026-02-30T00:00:00Z", "timestamp")  # no such day
    for bad in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "9999-01-01T00:00:00Z"):
        with pytest.raises(InvalidInput) as refused:
            event_time(bad, "timestamp")
        assert refused.value.details["field"] == "timestamp"
        assert "timestamp must be a time from" in refused.value.message


def test_every_aggregation_has_lagos_name() -> None:
    """Lago's `aggregation_type` for each of the kernel's aggregations (a seat count is the
    month's peak: Lago's max)."""
    assert LAGO_AGGREGATIONS == {
        Aggregation.SUM: "sum_agg",
        Aggregation.COUNT: "count_agg",
        Aggregation.MAX: "max_agg",
        Aggregation.LATEST: "latest_agg",
        Aggregation.UNIQUE_COUNT: "unique_count_agg",
        Aggregation.SEATS: "max_agg",
    }
