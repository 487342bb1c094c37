"""Meters: which events a metric counts, what each adds, and how a definition is checked."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import MAX_EVENT_QUANTITY
from billing_kernel.errors import InvalidInput, UnknownEvent, UnknownMetric
from billing_kernel.metrics.rules import (
    DEFAULT_METRICS,
    MAX_FILTERS,
    MAX_METER_EVENTS,
    PREVIEW_EVENTS,
    Aggregation,
    MeterPreview,
    Metric,
    Position,
    Reading,
    Tally,
    counting_meters,
    either,
    events_text,
    filters_text,
    meter_change,
    meter_from_stored,
    new_meter,
    preview_meter,
    validate_event_name,
    whole_number,
)
from billing_kernel.usage import rules as usage_rules
from billing_kernel.usage.rules import (
    EventTimeWindow,
    Intake,
    Line,
    counter_increments,
    counter_lasts,
    counter_peaks,
    new_usage_event,
    skip_counts,
)

TOKENS = Metric(
    "llm_tokens", "LLM tokens", "tokens", events=("llm.completion",), value_property="tokens"
)
CALLS = Metric("llm_calls", "LLM calls", "calls", Aggregation.COUNT, events=("llm.completion",))
GPT = Metric(
    "gpt_tokens",
    "GPT tokens",
    "tokens",
    events=("llm.completion", "llm.chat"),
    value_property="tokens",
    filters=(("model", "gpt-5"), ("paid", True)),
)
CATALOGUE = {m.key: m for m in (*DEFAULT_METRICS, TOKENS, CALLS, GPT)}
NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
WINDOW = EventTimeWindow(max_clock_skew=timedelta(minutes=5), max_age=timedelta(days=35))


def meter(**fields: Any) -> Metric:
    given = {"name": "Calls", "unit": "calls", "aggregation": "sum"} | fields
    return new_meter(given.pop("key", "calls"), **given)


def test_an_event_counts_toward_every_metric_that_counts_its_name_and_admits_it() -> None:
    sent = {"tokens": 1200, "model": "gpt-5", "paid": True}
    assert counting_meters("llm.completion", sent, CATALOGUE).counted == [
        (GPT, 1200),
        (CALLS, 1),
        (TOKENS, 1200),
    ]
    assert counting_meters("llm.chat", sent, CATALOGUE).counted == [(GPT, 1200)]
    other_model = sent | {"model": "claude"}
    assert counting_meters("llm.completion", other_model, CATALOGUE).counted == [
        (CALLS, 1),
        (TOKENS, 1200),
    ]
    assert (
        counting_meters("llm.chat", other_model, CATALOGUE).counted == []
    )  # accepted, counts nothing


def test_a_metric_without_event_names_counts_events_named_by_its_key() -> None:
    assert counting_meters("tokens", {"value": 7}, CATALOGUE).counted == [(CATALOGUE["tokens"], 7)]
    assert counting_meters("tokens", {"quantity": 8}, CATALOGUE).counted == [
        (CATALOGUE["tokens"], 8)
    ]
    assert counting_meters("tokens", {"value": 7, "quantity": 8}, CATALOGUE)[0][0][1] == 7
    assert counting_meters("tokens", {"amount": 7}, CATALOGUE) == Reading([], ("tokens",))
    required = {"tokens": replace(CATALOGUE["tokens"], required=True)}
    with pytest.raises(InvalidInput) as refused:
        counting_meters("tokens", {"amount": 7}, required)
    assert refused.value.details["field"] == "properties.value"
    assert refused.value.message == (
        "metric 'tokens' sums property `value` (or `quantity`), which the event does not have "
        "(required)"
    )


def test_an_event_no_metric_counts_is_unknown_and_names_those_that_are_counted() -> None:
    with pytest.raises(UnknownEvent) as refused:
        counting_meters("llm.embed", {}, CATALOGUE)
    assert isinstance(refused.value, UnknownMetric)
    assert refused.value.code == "unknown_event"
    assert refused.value.details["field"] == "event"
    assert refused.value.message == (
        "no metric counts events named 'llm.embed'; counted: llm.chat, llm.completion, "
        "playbook_runs, tokens"
    )
    with pytest.raises(UnknownEvent):
        counting_meters("seats", {"value": 1}, CATALOGUE)


@pytest.mark.parametrize(
    ("value", "admitted"),
    [("gpt-5", True), ("GPT-5", False), ("gpt-5 ", False), (5, False), (None, False)],
)
def test_a_text_filter_admits_only_that_exact_text(value: object, admitted: bool) -> None:
    sent = {"model": value, "paid": True}
    assert GPT.counts(sent) is admitted
    assert GPT.counts({"paid": True}) is False  # absent is not a match


@pytest.mark.parametrize(
    ("wanted", "value", "admitted"),
    [
        (True, True, True),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0, False, False),
        (1, 1, True),
        (1, 1.0, False),
        (1, "1", False),
        ("1", 1, False),
        (False, False, True),
    ],
)
def test_filters_compare_json_values_with_their_types(
    wanted: object, value: object, admitted: bool
) -> None:
    metric = Metric("m", "M", "u", filters=(("x", wanted),))  # type: ignore[arg-type]
    assert metric.counts({"x": value}) is admitted


def test_every_filter_must_hold() -> None:
    assert GPT.counts({"model": "gpt-5", "paid": True, "region": "eu"})
    assert not GPT.counts({"model": "gpt-5", "paid": False})
    assert not GPT.counts({"model": "gpt-5"})
    assert TOKENS.counts({})  # no filters: every event


@pytest.mark.parametrize(
    ("value", "amount"),
    [(0, 0), (1200, 1200), (3.0, 3), ("45", 45), (MAX_EVENT_QUANTITY, MAX_EVENT_QUANTITY)],
)
def test_a_sum_adds_its_amount_propertys_whole_number(value: object, amount: int) -> None:
    assert TOKENS.amount({"tokens": value}) == amount
    assert CALLS.amount({"tokens": value}) == 1


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, r"^properties\.tokens must be from 0 to 1000000000000, got -1$"),
        (MAX_EVENT_QUANTITY + 1, r"^properties\.tokens must be from 0 to 1000000000000, got "),
        (1.5, r"^properties\.tokens must be a whole number, got 1\.5$"),
        (True, r"^properties\.tokens must be a whole number, got True$"),
        ("12a", "whole number"),
        (None, "whole number"),
        ([3], "whole number"),
    ],
)
def test_an_amount_that_is_not_a_whole_number_in_range_is_refused(
    value: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        TOKENS.amount({"tokens": value})
    assert refused.value.details["field"] == "properties.tokens"


def test_a_sum_without_its_property_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInput) as refused:
        TOKENS.amount({"value": 3})
    assert refused.value.message == (
        "metric 'llm_tokens' sums property `tokens`, which the event does not have"
    )
    assert refused.value.details["field"] == "properties.tokens"
    assert CALLS.amount({}) == 1


def test_a_meter_that_cannot_read_its_property_skips_the_event_and_the_others_count_it() -> None:
    assert counting_meters("llm.completion", {"model": "claude"}, CATALOGUE) == Reading(
        [(CALLS, 1)], ("llm_tokens",)
    )
    unreadable = {"model": "gpt-5", "paid": True, "tokens": "many"}
    assert counting_meters("llm.completion", unreadable, CATALOGUE) == Reading(
        [(CALLS, 1)], ("gpt_tokens", "llm_tokens")
    )
    # Filters first: a meter whose filters leave the event out neither counts nor skips it.
    assert counting_meters("llm.chat", {"model": "claude"}, CATALOGUE) == Reading([], ())
    billed = CATALOGUE | {"gpt_tokens": replace(GPT, required=True)}
    assert counting_meters("llm.completion", {"model": "claude"}, billed) == Reading(
        [(CALLS, 1)], ("llm_tokens",)
    )  # the required meter's filters leave it out: not refused
    with pytest.raises(InvalidInput) as refused:
        counting_meters("llm.completion", unreadable, billed)
    assert refused.value.message == (
        "metric 'gpt_tokens': properties.tokens must be a whole number, got 'many' (required)"
    )
    assert refused.value.details["field"] == "properties.tokens"


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 0), (12, 12), (3.0, 3), ("0", 0), ("120", 120), (-4, -4), (2**40, 2**40)],
)
def test_whole_numbers_in_the_shapes_clients_send(value: object, expected: int) -> None:
    assert whole_number(value, "f") == expected
    assert type(whole_number(value, "f")) is int


@pytest.mark.parametrize("value", [1.5, "1.5", "", " 1", "1e3", "-1", True, False, None, [1], "x"])
def test_what_is_not_a_whole_number_names_its_field(value: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        whole_number(value, "payload.value")
    assert refused.value.details["field"] == "payload.value"
    assert refused.value.message.startswith("payload.value must be a whole number, got ")


def test_a_bad_amount_is_not_skipped_for_the_next_property() -> None:
    tokens = CATALOGUE["tokens"]
    with pytest.raises(InvalidInput) as refused:
        tokens.amount({"value": "x", "quantity": 9})
    assert refused.value.details["field"] == "properties.value"


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "llm.completion",
        "API/request:v2",
        "run-1_x",
        "9lives",
        ".x",
        "llm call",  # what every incumbent takes: kept as sent
        " padded ",
        "トークン",
        "é",
        "x" * 255,
    ],
)
def test_event_names_are_any_text_the_incumbents_take(name: str) -> None:
    assert validate_event_name(name) == name


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("", "event must not be empty"),
        ("x" * 256, "event is longer than 255 characters"),
        ("a\n", "event contains control characters"),
        ("a\x7f", "event contains control characters"),
        ("a\x85", "event contains control characters"),
        ("a\ud800", "event contains a lone UTF-16 surrogate, which is not Unicode text"),
        (None, "event must be a string"),
        (3, "event must be a string"),
    ],
)
def test_what_is_not_an_event_name(name: object, said: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        validate_event_name(name)
    assert refused.value.details["field"] == "event"
    assert refused.value.message == f"{said}, got {name!r:.40}"


def test_either_lists_the_properties_an_amount_is_read_from() -> None:
    assert either(["value"]) == "`value`"
    assert either(["value", "quantity", "n"]) == "`value` (or `quantity`) (or `n`)"


def test_a_definition_keeps_what_it_was_given() -> None:
    defined = meter(
        key="gpt_tokens",
        name="GPT tokens",
        unit="tokens",
        events=["llm.completion", "llm.chat", "llm.completion"],
        value_property="tokens",
        filters={"paid": True, "model": "gpt-5"},
    )
    assert defined == Metric(
        "gpt_tokens",
        "GPT tokens",
        "tokens",
        Aggregation.SUM,
        events=("llm.completion", "llm.chat"),
        value_property="tokens",
        filters=(("model", "gpt-5"), ("paid", True)),
    )
    assert defined.listens_to == ("llm.completion", "llm.chat")
    assert defined.is_recordable


def test_a_definition_counting_its_own_key_stores_no_names() -> None:
    assert meter(events=["calls"]).events == ()
    assert meter().events == ()
    assert meter().listens_to == ("calls",)
    assert meter(aggregation="count").aggregation is Aggregation.COUNT


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"key": "Calls"},
            "key",
            "^key must be 1-64 lowercase letters, digits and _, starting with a letter$",
        ),
        ({"key": "1calls"}, "key", "starting with a letter"),
        ({"key": "c" * 65}, "key", "1-64"),
        ({"key": 3}, "key", "lowercase"),
        (
            {"aggregation": "seats"},
            "aggregation",
            "one of sum, count, max, latest, unique_count, got 'seats'",
        ),
        ({"aggregation": "avg"}, "aggregation", "one of sum, count, max, latest, unique_count"),
        (
            {"aggregation": "unique_count"},
            "value_property",
            "^a unique count needs value_property: the property whose values it counts$",
        ),
        ({"events": ["x\ty"]}, "event", "event contains control characters"),
        ({"events": [f"e{n}" for n in range(MAX_METER_EVENTS + 1)]}, "events", "more than 20"),
        ({"value_property": ""}, "value_property", "value_property"),
        (
            {"aggregation": "count", "value_property": "n"},
            "value_property",
            "^a count reads no property: leave value_property out$",
        ),
        ({"filters": {"m": 1.5}}, "filters.m", "text, a whole number or a boolean"),
        ({"filters": {"m": None}}, "filters.m", "text, a whole number or a boolean"),
        ({"filters": {"m": [1]}}, "filters.m", "text, a whole number or a boolean"),
        ({"filters": {"": "x"}}, None, "^a filter's property must be"),
        (
            {"filters": {f"p{n}": n for n in range(MAX_FILTERS + 1)}},
            "filters",
            "more than 10",
        ),
        ({"name": ""}, "name", "name is required"),
        ({"name": "  "}, "name", "name is required"),
        ({"name": None}, "name", "name is required"),
        ({"name": "n" * 129}, "name", "at most 128"),
        ({"unit": ""}, "unit", "unit is required"),
        ({"unit": "u" * 33}, "unit", "at most 32"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_field(
    fields: dict[str, Any], field: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        meter(**fields)
    if field is not None:
        assert refused.value.details["field"] == field


def test_the_limits_themselves_are_allowed() -> None:
    names = [f"e{n}" for n in range(MAX_METER_EVENTS)]
    assert len(meter(events=names).events) == MAX_METER_EVENTS
    wanted = {f"p{n}": n for n in range(MAX_FILTERS)}
    assert len(meter(filters=wanted).filters) == MAX_FILTERS
    assert meter(key="c" * 64).key == "c" * 64
    assert meter(name="n" * 128, unit="u" * 32).unit == "u" * 32


def test_a_definition_may_change_what_it_counts_but_not_how_it_aggregates() -> None:
    stored = meter()
    renamed = meter(name="API calls", events=["api.call"], filters={"ok": True})
    assert meter_change(stored, renamed) is renamed
    with pytest.raises(InvalidInput) as refused:
        meter_change(stored, meter(aggregation="count"))
    assert refused.value.details["field"] == "aggregation"
    assert refused.value.message == (
        "metric 'calls' is a sum; an aggregation cannot change (define a new metric)"
    )
    seats = {m.key: m for m in DEFAULT_METRICS}["seats"]
    with pytest.raises(
        InvalidInput, match=r"^metric 'seats' is counted from org members$"
    ) as not_a_meter:
        meter_change(seats, meter(key="seats"))
    assert not_a_meter.value.details["field"] == "key"


def test_filters_are_stored_as_one_json_object_by_property() -> None:
    unsorted = Metric("m", "M", "u", filters=(("tier", 2), ("model", "gpt-5")))
    assert filters_text(unsorted) == '{"model": "gpt-5", "tier": 2}'
    assert events_text(Metric("m", "M", "u", events=("a", "b"))) == '["a", "b"]'


USERS = Metric(
    "llm_users",
    "LLM users",
    "users",
    Aggregation.UNIQUE_COUNT,
    events=("llm.completion",),
    value_property="user",
)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("u1", '"u1"'),
        (1, "1"),
        (True, "true"),
        (None, "null"),
        ({"b": 1, "a": "é"}, '{"a":"é","b":1}'),
        ([2, 1], "[2,1]"),
    ],
)
def test_a_unique_count_counts_its_propertys_json_value(value: object, text: str) -> None:
    assert USERS.unique_value({"user": value, "other": 3}) == text
    assert USERS.amount({"user": value}) == 1
    assert TOKENS.unique_value({"tokens": 3}) is None
    assert CALLS.unique_value({}) is None


def test_a_unique_count_refuses_an_event_without_its_property() -> None:
    for read in (USERS.unique_value, USERS.amount):
        with pytest.raises(InvalidInput) as refused:
            read({"users": "u1"})
        assert refused.value.message == (
            "metric 'llm_users' counts unique values of property `user`, which the event "
            "does not have"
        )
        assert refused.value.details["field"] == "properties.user"


def test_what_each_aggregation_is_counted_from() -> None:
    seats = {m.key: m for m in DEFAULT_METRICS}["seats"]
    assert [(m.is_recordable, m.counts_events) for m in (TOKENS, CALLS, USERS, seats)] == [
        (True, True),
        (True, True),
        (False, True),
        (False, False),
    ]
    catalogue = {"llm_users": USERS}
    assert counting_meters("llm.completion", {"user": "u"}, catalogue) == Reading([(USERS, 1)], ())


@given(
    events=st.lists(st.sampled_from(["a.b", "c", "d/e"]), max_size=3, unique=True),
    prop=st.none() | st.sampled_from(["tokens", "n"]),
    counts=st.booleans(),
    required=st.booleans(),
    filters=st.dictionaries(
        st.sampled_from(["model", "paid", "tier"]),
        st.sampled_from(["gpt-5", "", "x y", "é"]) | st.integers(-5, 5) | st.booleans(),
        max_size=3,
    ),
)
def test_a_definition_reads_back_as_stored(
    events: list[str], prop: str | None, counts: bool, required: bool, filters: dict[str, Any]
) -> None:
    kind = {"aggregation": "count"} if counts else {"value_property": prop, "required": required}
    defined = meter(events=events or None, filters=filters, **kind)
    stored = meter_from_stored(
        defined.key,
        defined.name,
        defined.unit,
        defined.aggregation.value,
        events_text(defined),
        defined.value_property,
        filters_text(defined),
        defined.required,
    )
    assert stored == defined
    assert (events_text(defined) is None) is (defined.events == ())
    assert (filters_text(defined) is None) is (filters == {})


def named(catalogue: dict[str, Metric] = CATALOGUE, **fields: Any) -> Any:
    sent: dict[str, Any] = {
        "org_id": "org-1",
        "metric": None,
        "quantity": None,
        "idempotency_key": "k-1",
        "occurred_at": None,
        "event": "llm.completion",
        "properties": {"tokens": 900, "model": "gpt-5", "paid": True},
    } | fields
    return new_usage_event(**sent, received_at=NOW, catalogue=catalogue, window=WINDOW)


def test_a_named_event_carries_a_line_per_metric_and_no_quantity() -> None:
    made = named()
    assert made.skipped == ()
    assert (made.org_id, made.idempotency_key) == ("org-1", "k-1")
    assert (made.name, made.quantity) == ("llm.completion", None)
    assert made.lines == (
        Line("gpt_tokens", 900),
        Line("llm_calls", 1, None, Aggregation.COUNT),
        Line("llm_tokens", 900),
    )
    assert made.properties == '{"model":"gpt-5","paid":true,"tokens":900}'
    assert named(properties={"tokens": 1, "model": "x"}).lines == (
        Line("llm_calls", 1, None, Aggregation.COUNT),
        Line("llm_tokens", 1),
    )


def test_a_report_of_a_quantity_is_one_line_of_its_metric() -> None:
    made = named(event=None, metric="llm_calls", quantity=4, properties=None)
    assert (made.name, made.quantity, made.lines) == (
        "llm_calls",
        4,
        (Line("llm_calls", 4, None, Aggregation.COUNT),),
    )


def test_an_event_is_a_named_event_or_a_report_of_a_quantity() -> None:
    with pytest.raises(InvalidInput) as both:
        named(metric="tokens", quantity=3)
    assert both.value.message == (
        "an event has either an `event` name (its metrics read its properties) or "
        "`metric` and `quantity`, not both"
    )
    with pytest.raises(InvalidInput) as neither:
        named(event=None)
    assert neither.value.message == "an event needs `metric` and `quantity`, or an `event` name"
    bare = named(properties=None)  # the sums of a property skip it; the count counts it
    assert bare.lines == (Line("llm_calls", 1, None, Aggregation.COUNT),)
    assert bare.skipped == ("llm_tokens",)  # gpt_tokens's filters leave it out
    required = CATALOGUE | {"llm_tokens": replace(TOKENS, required=True)}
    with pytest.raises(InvalidInput) as refused:
        named(required, properties=None)
    assert refused.value.details["field"] == "properties.tokens"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"metric": "tokens"}, "event"),
        ({"quantity": 3}, "event"),
        ({"event": None}, "metric"),
        ({"event": "x\ty"}, "event"),
        ({"properties": "tokens=3"}, "properties"),
        ({"org_id": ""}, "org_id"),
    ],
)
def test_a_named_event_is_refused_naming_what_is_wrong(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        named(**fields)
    assert refused.value.details["field"] == field


def test_a_named_event_without_properties_counts_only_where_it_needs_none() -> None:
    catalogue = {"runs": Metric("runs", "Runs", "runs", Aggregation.COUNT, events=("run",))}
    made = new_usage_event(
        org_id="o",
        metric=None,
        quantity=None,
        idempotency_key="k",
        occurred_at=None,
        received_at=NOW,
        catalogue=catalogue,
        window=WINDOW,
        event="run",
    )
    assert (made.properties, made.lines) == (None, (Line("runs", 1, None, Aggregation.COUNT),))


def test_a_named_event_carries_its_unique_counts_value_and_increments_follow_the_store() -> None:
    catalogue = CATALOGUE | {"llm_users": USERS}
    made = named(
        catalogue,
        org_id="o",
        idempotency_key="k",
        properties={"tokens": 5, "user": "u-1"},
    )
    assert made.lines == (
        Line("llm_calls", 1, None, Aggregation.COUNT),
        Line("llm_tokens", 5),
        Line("llm_users", 1, '"u-1"', Aggregation.UNIQUE_COUNT),
    )
    month = NOW.date().replace(day=1)
    assert counter_increments([made], {("o", "k", "llm_users"): 0}) == {
        ("o", month, "llm_calls"): 1,
        ("o", month, "llm_tokens"): 5,
        ("o", month, "llm_users"): 0,
    }
    assert counter_increments([made], {("o", "k", "llm_users"): 1})["o", month, "llm_users"] == 1
    with pytest.raises(KeyError):
        counter_increments([made])  # a unique count's line waits for the store's answer


def test_a_unique_count_is_not_recorded_as_a_quantity() -> None:
    catalogue = CATALOGUE | {"llm_users": USERS}
    with pytest.raises(InvalidInput) as refused:
        named(catalogue, event=None, metric="llm_users", quantity=1)
    assert refused.value.message == (
        "metric 'llm_users' is a unique_count of named events, not a sum of quantities: it "
        "cannot be recorded, consumed or reserved as a quantity"
    )
    assert refused.value.details["field"] == "metric"


PEAK = Metric(
    "peak_workers", "Peak workers", "workers", Aggregation.MAX, events=("workers.sampled",)
)


def test_a_max_reads_its_amount_as_a_sum_does_and_keeps_the_highest() -> None:
    assert counting_meters("workers.sampled", {"value": 7}, {"peak_workers": PEAK}) == Reading(
        [(PEAK, 7)], ()
    )
    assert (PEAK.is_additive, TOKENS.is_additive, USERS.is_additive) == (False, True, True)
    assert (PEAK.is_recordable, PEAK.counts_events) == (False, True)
    skipped = Reading([], ("peak_workers",))
    assert counting_meters("workers.sampled", {"workers": 7}, {"peak_workers": PEAK}) == skipped
    with pytest.raises(InvalidInput) as refused:
        PEAK.amount({"workers": 7})
    assert refused.value.message == (
        "metric 'peak_workers' peaks on property `value` (or `quantity`), which the event "
        "does not have"
    )
    defined = meter(key="peak_workers", aggregation="max", value_property="workers")
    assert (defined.aggregation, defined.value_property) == (Aggregation.MAX, "workers")
    assert meter(aggregation="max").value_property is None


AT = Position(NOW, "k-5")
LINES = Tally(quantity=30, events=3, highest=20, last_at=AT, last=4)


def test_a_periods_usage_is_its_lines_sum_a_maxs_highest_or_a_latests_last() -> None:
    assert TOKENS.period_usage(LINES) == 30
    assert USERS.period_usage(LINES) == 30
    assert PEAK.period_usage(LINES) == 20
    assert GAUGE.period_usage(LINES) == 4
    assert GAUGE.period_usage(Tally()) == 0


def test_late_lines_add_their_sum_or_how_far_a_max_goes_past_what_was_billed() -> None:
    assert TOKENS.usage_added(LINES, billed=100, billed_last=None) == 30
    assert PEAK.usage_added(LINES, billed=12, billed_last=None) == 8
    assert PEAK.usage_added(LINES, billed=20, billed_last=None) == 0
    assert PEAK.usage_added(LINES, billed=25, billed_last=None) == 0  # never below billed


def test_late_lines_of_a_latest_change_it_only_when_their_last_stands_after_the_billed_one() -> (
    None
):
    assert GAUGE.usage_added(LINES, billed=10, billed_last=None) == -6
    earlier_time = Position(NOW - timedelta(seconds=1), "k-9")
    assert GAUGE.usage_added(LINES, billed=10, billed_last=earlier_time) == -6  # a credit
    earlier_key = Position(NOW, "k-4")
    assert GAUGE.usage_added(LINES, billed=1, billed_last=earlier_key) == 3
    assert GAUGE.usage_added(LINES, billed=1, billed_last=AT) == 0  # the same line
    later = Position(NOW, "k-6")
    assert GAUGE.usage_added(LINES, billed=1, billed_last=later) == 0
    assert GAUGE.usage_added(Tally(), billed=1, billed_last=None) == 0  # no line


def test_a_tally_adds_up_lines_keeps_the_highest_and_the_last_by_event_time_then_key() -> None:
    first, same_time, later = Position(NOW, "b"), Position(NOW, "c"), Position(NOW + DAY, "a")
    assert Tally().plus(5, first) == Tally(5, 1, 5, first, 5)
    assert Tally().plus(5, first).plus(3, same_time) == Tally(8, 2, 5, same_time, 3)
    assert Tally().plus(3, same_time).plus(5, first) == Tally(8, 2, 5, same_time, 3)
    assert Tally().plus(2, later).plus(9, first) == Tally(11, 2, 9, later, 2)
    assert Tally().plus(4, later).plus(1, later) == Tally(5, 2, 4, later, 4)  # not later
    assert Tally().plus(7).plus(2) == Tally(9, 2, 7, None, 0)  # no position: no last


def test_a_named_events_max_line_rises_its_counter_and_adds_nothing() -> None:
    catalogue = CATALOGUE | {"peak_workers": PEAK}
    sampled = [
        named(catalogue, event="workers.sampled", idempotency_key=key, properties={"value": n})
        for key, n in (("a", 4), ("b", 9), ("c", 2))
    ]
    assert [e.lines for e in sampled] == [
        (Line("peak_workers", n, None, Aggregation.MAX),) for n in (4, 9, 2)
    ]
    month = NOW.date().replace(day=1)
    assert counter_peaks(sampled) == {("org-1", month, "peak_workers"): 9}
    assert counter_increments(sampled) == {}
    mixed = [*sampled, named(catalogue)]
    assert counter_peaks(mixed) == {("org-1", month, "peak_workers"): 9}
    assert counter_increments(mixed) == {
        ("org-1", month, "gpt_tokens"): 900,
        ("org-1", month, "llm_calls"): 1,
        ("org-1", month, "llm_tokens"): 900,
    }
    later = named(
        catalogue,
        event="workers.sampled",
        idempotency_key="d",
        occurred_at=NOW - timedelta(days=20),
        properties={"value": 1},
    )
    assert counter_peaks([*sampled, later]) == {
        ("org-1", month.replace(month=4), "peak_workers"): 1,
        ("org-1", month, "peak_workers"): 9,
    }
    assert list(counter_peaks([later, *sampled])) == sorted(counter_peaks([later, *sampled]))
    idle = named(catalogue, event="workers.sampled", idempotency_key="e", properties={"value": 0})
    assert counter_peaks([idle]) == {("org-1", month, "peak_workers"): 0}  # a peak of none


def test_an_events_lines_after_a_max_still_add() -> None:
    samples = Metric(
        "workers_samples", "Samples", "samples", Aggregation.COUNT, ("workers.sampled",)
    )
    catalogue = {"peak_workers": PEAK, "workers_samples": samples}
    made = named(catalogue, event="workers.sampled", properties={"value": 5})
    assert [line.metric for line in made.lines] == ["peak_workers", "workers_samples"]
    month = NOW.date().replace(day=1)
    assert counter_increments([made]) == {("org-1", month, "workers_samples"): 1}
    assert counter_peaks([made]) == {("org-1", month, "peak_workers"): 5}


def test_a_max_is_not_recorded_as_a_quantity() -> None:
    with pytest.raises(InvalidInput) as refused:
        named(CATALOGUE | {"peak_workers": PEAK}, event=None, metric="peak_workers", quantity=1)
    assert refused.value.message == (
        "metric 'peak_workers' is a max of named events, not a sum of quantities: it cannot "
        "be recorded, consumed or reserved as a quantity"
    )


GAUGE = Metric("storage_gb", "Storage", "GB", Aggregation.LATEST, events=("storage.sampled",))
DAY = timedelta(days=1)


def test_a_latest_takes_the_last_line_by_event_time_then_key() -> None:
    catalogue = CATALOGUE | {"storage_gb": GAUGE}

    def sampled(key: str, gb: int, ago: timedelta) -> Any:
        return named(
            catalogue,
            event="storage.sampled",
            idempotency_key=key,
            occurred_at=NOW - ago,
            properties={"value": gb},
        )

    month, april = NOW.date().replace(day=1), NOW.date().replace(month=4, day=1)
    events = [
        sampled("b", 40, DAY),
        sampled("a", 70, DAY),  # the same time: "b" stands after it
        sampled("c", 10, 2 * DAY),
        sampled("d", 99, 30 * DAY),  # April's
    ]
    assert events[0].lines == (Line("storage_gb", 40, None, Aggregation.LATEST),)
    assert counter_lasts(events) == {
        ("org-1", april, "storage_gb"): (Position(NOW - 30 * DAY, "d"), 99),
        ("org-1", month, "storage_gb"): (Position(NOW - DAY, "b"), 40),
    }
    assert counter_lasts(reversed(events)) == counter_lasts(events)
    assert list(counter_lasts(events)) == sorted(counter_lasts(events))
    assert counter_increments(events) == {}
    assert counter_peaks(events) == {}
    assert counter_lasts([named(catalogue)]) == {}
    skipped = Reading([], ("storage_gb",))
    assert counting_meters("storage.sampled", {"gb": 3}, {"storage_gb": GAUGE}) == skipped
    with pytest.raises(InvalidInput) as refused:
        GAUGE.amount({"gb": 3})
    assert refused.value.message == (
        "metric 'storage_gb' reads property `value` (or `quantity`), which the event does not have"
    )
    assert (GAUGE.is_recordable, GAUGE.is_additive, GAUGE.counts_events) == (False, False, True)


GOOD = st.tuples(
    st.fixed_dictionaries(
        {
            "org_id": st.sampled_from(["org-1", "org-2"]),
            "idempotency_key": st.sampled_from(["k-1", "k-2"]),
            "occurred_at": st.sampled_from([None, NOW, NOW - timedelta(days=35)]),
        }
    ),
    st.one_of(
        st.fixed_dictionaries(  # a report of a quantity
            {
                "metric": st.sampled_from(["tokens", "playbook_runs", "llm_calls"]),
                "quantity": st.integers(0, 10),
                "event": st.none(),
                "properties": st.sampled_from([None, {"model": "gpt-5"}]),
            }
        ),
        st.fixed_dictionaries(  # a named event
            {
                "metric": st.none(),
                "quantity": st.none(),
                "event": st.sampled_from(["llm.completion", "llm.chat"]),
                "properties": st.sampled_from(
                    [{"tokens": 900, "model": "gpt-5", "paid": True}, {"tokens": 3, "model": "x"}]
                ),
            }
        ),
    ),
).map(lambda drawn: drawn[0] | drawn[1])
"""A valid event: a report of a quantity or a named event."""
BAD = {
    "org_id": ["", " org", 7, None, ["org-1"]],
    "metric": ["seats", "nope", 3, None, ["tokens"]],
    "quantity": [-1, 2.5, True, "4", None],
    "idempotency_key": ["", "k\x00"],
    "occurred_at": [
        NOW - timedelta(days=35, microseconds=1),
        NOW + timedelta(minutes=5, microseconds=1),
        NOW.replace(tzinfo=None),
    ],
    "event": ["nobody.listens", "x\ty", "llm.chat"],
    "properties": [{"model": "gpt-5"}, {"tokens": -2}, {" bad": 1}, {"t": float("nan")}, "t=3"],
}
SENT = st.tuples(GOOD, st.sampled_from(sorted(BAD)), st.integers(0, 4), st.booleans()).map(
    lambda drawn: (
        drawn[0] | ({drawn[1]: BAD[drawn[1]][drawn[2] % len(BAD[drawn[1]])]} if drawn[3] else {})
    )
)
"""An event, valid or with one field made bad."""


@given(st.lists(SENT, max_size=12))
def test_one_intake_judges_a_batch_as_each_event_would_be_judged_alone(
    batch: list[dict[str, Any]],
) -> None:
    """What an Intake keeps between the events of a batch (the org ids, metrics and event
    names already found good) changes no answer: every event is accepted as it would be
    alone, or refused with the same error."""

    def outcome(judge: Any, sent: dict[str, Any]) -> object:
        try:
            return judge(**sent)
        except (InvalidInput, UnknownMetric, UnknownEvent) as exc:
            return (type(exc), exc.message, exc.details)

    intake = Intake(NOW, CATALOGUE, WINDOW)
    alone = [
        outcome(
            new_usage_event, sent | {"received_at": NOW, "catalogue": CATALOGUE, "window": WINDOW}
        )
        for sent in batch
    ]
    assert [outcome(intake.judge, sent) for sent in batch] == alone


def test_an_intake_checks_an_org_id_a_metric_and_an_event_name_once_a_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What every event of a batch shares is worked out once: the org id, the metric a
    quantity is reported of, the meters listening to an event name. Only what was found
    good is kept: a bad org id is checked, and refused, each time."""
    calls: list[object] = []

    def counting(check: Any) -> Any:
        def counted(value: object, *args: Any) -> Any:
            calls.append(value)
            return check(value, *args)

        return counted

    for name in ("validate_id", "validate_metric", "listening_meters"):
        monkeypatch.setattr(usage_rules, name, counting(getattr(usage_rules, name)))
    intake = Intake(NOW, CATALOGUE, WINDOW)
    sent = {"occurred_at": None, "properties": None}
    for n in range(3):
        intake.judge(org_id="org-1", metric="tokens", quantity=n, idempotency_key=f"r{n}", **sent)
        intake.judge(
            org_id="org-1",
            metric=None,
            quantity=None,
            idempotency_key=f"n{n}",
            event="llm.completion",
            occurred_at=None,
            properties={"tokens": n},
        )
        with pytest.raises(InvalidInput):
            intake.judge(org_id=" x", metric="tokens", quantity=1, idempotency_key="k", **sent)
    keys = [f"{kind}{n}" for n in range(3) for kind in ("r", "n")]
    assert sorted(map(str, calls)) == sorted(
        ["org-1", "tokens", "llm.completion", " x", " x", " x", *keys]
    )


def test_a_meter_is_required_only_by_saying_so_and_a_count_cannot_be() -> None:
    assert not meter().required
    assert meter(required=True).required
    assert meter(aggregation="unique_count", value_property="user", required=True).required
    for bad, message in [
        ({"required": "yes"}, "required must be true or false"),
        ({"required": 1}, "required must be true or false"),
        (
            {"aggregation": "count", "required": True},
            "a count reads no property, so none can be required: leave required out",
        ),
    ]:
        with pytest.raises(InvalidInput) as refused:
            meter(**bad)
        assert (refused.value.message, refused.value.details["field"]) == (message, "required")
    assert not meter(aggregation="count", required=False).required


def test_what_each_meter_skipped_is_counted_per_org_and_month() -> None:
    catalogue = CATALOGUE | {"llm_users": USERS}
    events = [
        named(catalogue, idempotency_key="a", properties={"model": "x"}),  # no tokens, no user
        named(catalogue, idempotency_key="b", properties={"tokens": 3, "user": "u"}),
        named(catalogue, idempotency_key="c", org_id="org-2", properties={"user": "u"}),
        named(
            catalogue,
            idempotency_key="d",
            properties={"tokens": "x"},
            occurred_at=NOW - timedelta(days=20),
        ),
    ]
    may, april = date(2026, 5, 1), date(2026, 4, 1)
    assert skip_counts(events) == {
        ("org-1", april, "llm_tokens"): 1,
        ("org-1", april, "llm_users"): 1,
        ("org-1", may, "llm_tokens"): 1,
        ("org-1", may, "llm_users"): 1,
        ("org-2", may, "llm_tokens"): 1,
    }
    assert list(skip_counts(reversed(events))) == list(skip_counts(events))  # one order
    assert skip_counts(events + events[:1])[("org-1", may, "llm_tokens")] == 2
    assert skip_counts([]) == {}


def test_a_definition_is_tried_on_last_months_events_of_its_names() -> None:
    april = BillingPeriod.starting(date(2026, 4, 1))
    found = [
        "[1]",  # not an object: counts nowhere, and the others are still tried
        '{"model":"gpt-5","paid":true,"tokens":5}',
        '{"model":"gpt-5","paid":true}',  # admitted, unreadable
        '{"model":"gpt-5","paid":true,"tokens":-1}',  # admitted, out of range
        '{"model":"claude","tokens":5}',  # left out by the filters
        None,  # no properties: left out by the filters
    ]
    assert preview_meter(GPT, april, found) == MeterPreview(april, 6, 1, 2, True)
    assert preview_meter(CALLS, april, [None, "{}"]) == MeterPreview(april, 2, 2, 0, True)
    assert preview_meter(CALLS, april, []) == MeterPreview(april, 0, 0, 0, True)
    many = ["{}"] * (PREVIEW_EVENTS + 1)
    assert preview_meter(CALLS, april, many) == MeterPreview(
        april, PREVIEW_EVENTS, PREVIEW_EVENTS, 0, False
    )
    exactly = ["{}"] * PREVIEW_EVENTS
    assert preview_meter(CALLS, april, exactly).complete
