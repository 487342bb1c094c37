import json
import uuid
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.alerts.rules import AlertTerms, Reading
from billing_kernel.common.money import MAX_AMOUNT
from billing_kernel.common.validation import (
    MAX_EVENT_QUANTITY,
    MAX_PROPERTIES,
    MAX_PROPERTIES_LENGTH,
    canonical_properties,
    validate_id,
    validate_occurred_at,
    validate_text,
)
from billing_kernel.errors import AmountOutOfBounds, InvalidInput, UnknownEvent, UnknownMetric
from billing_kernel.metrics.rules import DEFAULT_METRICS
from billing_kernel.pricing.rules import (
    Dimension,
    Price,
    PriceModel,
    Tier,
    ValuePrice,
    dimension_text,
    tiers_text,
)
from billing_kernel.usage.bounds import (
    NEAR_BOUND,
    Charge,
    Moved,
    beyond_bounds,
    charge_of,
    month_total,
    months_to_price,
)
from billing_kernel.usage.rules import (
    EventTimeWindow,
    Intake,
    Line,
    RecordStatus,
    StoredEvent,
    UsageBatchResult,
    UsageEvent,
    UsageOutcome,
    counter_increments,
    kept_until,
    new_usage_event,
)
from billing_kernel_sdk import fields

NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
CATALOGUE = {m.key: m for m in DEFAULT_METRICS}
WINDOW = EventTimeWindow(max_clock_skew=timedelta(minutes=5), max_age=timedelta(days=35))


def event(**overrides: Any):  # type: ignore[no-untyped-def]
    fields: dict[str, Any] = {
        "org_id": "org-1",
        "metric": "tokens",
        "quantity": 10,
        "idempotency_key": "k-1",
        "occurred_at": None,
    }
    fields.update(overrides)
    return new_usage_event(**fields, received_at=NOW, catalogue=CATALOGUE, window=WINDOW)


def test_a_valid_event_defaults_its_time_to_the_receive_time() -> None:
    accepted = event()
    assert accepted.occurred_at == accepted.received_at == NOW
    assert not accepted.occurred_at_given
    assert accepted.period.key == date(2026, 5, 1)
    assert accepted.skipped == ()  # a report of a quantity: no meter to skip it


def test_a_metric_that_is_not_text_is_unknown_not_a_crash() -> None:
    for odd in (["tokens"], {"key": "tokens"}, 7):
        with pytest.raises(UnknownMetric, match="unknown metric"):
            event(metric=odd)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("quantity", -1, "negative"),
        ("quantity", 1.5, "whole number"),
        ("quantity", 2.0, "whole number"),
        ("quantity", "10", "whole number"),
        ("quantity", True, "whole number"),
        ("quantity", MAX_EVENT_QUANTITY + 1, "per-event maximum"),
        ("metric", "seats", "counted from org members"),
        ("org_id", "", "non-empty"),
        ("org_id", " padded", "leading or trailing"),
        ("org_id", "x" * 65, "longer than 64"),
        ("org_id", "tab\there", "control characters"),
        ("org_id", 42, "string"),
        ("idempotency_key", "k" * 256, "longer than 255"),
        ("occurred_at", NOW + timedelta(minutes=5, seconds=1), "in the future"),
        ("occurred_at", NOW - timedelta(days=35, seconds=1), "older than 35 days"),
        ("occurred_at", datetime(2026, 5, 15, 12, 0), "timezone"),  # noqa: DTZ001
        ("occurred_at", "2026-05-15T12:00:00Z", "a datetime with a timezone"),
        # Valid JSON, but a lone surrogate is not Unicode text: no database can store it.
        ("org_id", "a\ud800b", "lone UTF-16 surrogate"),
        ("idempotency_key", "a\udc00", "lone UTF-16 surrogate"),
        # The offset moves the UTC instant out of the calendar.
        ("occurred_at", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "years 1 to"),
        (
            "occurred_at",
            datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=1))),
            "years 1 to 9999",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        event(**{field: value})
    assert refused.value.details["field"] == field


def test_an_event_with_several_bad_fields_is_refused_for_the_first_in_order() -> None:
    """The org, the metric, the quantity, the key, the event time, the properties: each
    event is refused naming the first of these that is wrong."""
    bad = {
        "org_id": "",
        "metric": "nope",
        "quantity": -1,
        "idempotency_key": "",
        "occurred_at": NOW + timedelta(days=1),
        "properties": "x",
    }
    order = list(bad)
    for n, field in enumerate(order):
        with pytest.raises((InvalidInput, UnknownMetric)) as refused:
            event(**{name: bad[name] for name in order[n:]})
        assert refused.value.details["field"] == field


def test_unknown_metric_names_the_known_ones() -> None:
    with pytest.raises(UnknownMetric, match="known metrics: playbook_runs, tokens") as refused:
        event(metric="gpu_seconds")
    assert refused.value.details["field"] == "metric"


def test_a_batch_result_counts_its_outcomes_by_status() -> None:
    statuses = [RecordStatus.ACCEPTED, RecordStatus.DUPLICATE, RecordStatus.ACCEPTED]
    result = UsageBatchResult(tuple(UsageOutcome(status, event()) for status in statuses))
    assert [result.count(status) for status in RecordStatus] == [2, 1, 0, 0]


def test_the_edges_of_the_time_window_are_accepted() -> None:
    assert event(occurred_at=NOW + timedelta(minutes=5)).occurred_at_given
    assert event(occurred_at=NOW - timedelta(days=35)).period.key == date(2026, 4, 1)


def test_replay_compares_metric_quantity_and_a_given_event_time() -> None:
    at = NOW - timedelta(hours=1)
    stored = event(occurred_at=at)
    assert event(occurred_at=at).is_replay_of(stored)
    assert event().is_replay_of(stored)  # no time given: the stored one stands
    assert not event(occurred_at=at - timedelta(seconds=1)).is_replay_of(stored)
    assert not event(quantity=11).is_replay_of(stored)
    assert not event(metric="playbook_runs").is_replay_of(stored)
    assert not event(occurred_at=at, properties={"model": "x"}).is_replay_of(stored)
    with_model = event(occurred_at=at, properties={"model": "x", "n": 1})
    assert event(occurred_at=at, properties={"n": 1, "model": "x"}).is_replay_of(with_model)
    assert not event(occurred_at=at, properties={"model": "x"}).is_replay_of(with_model)


def test_a_time_the_kernel_chose_for_the_stored_event_is_not_compared() -> None:
    """A consume's event (timed by the kernel) sent again with the sender's own time, e.g.
    by the SDK after it could not hear the consume's answer, is the same usage."""
    stamped = event()  # received without a time: the kernel's
    assert not stamped.occurred_at_given
    assert event(occurred_at=NOW - timedelta(minutes=3)).is_replay_of(stamped)
    assert event().is_replay_of(stamped)
    assert not event(occurred_at=NOW, quantity=11).is_replay_of(stamped)
    assert not event(occurred_at=NOW, metric="playbook_runs").is_replay_of(stamped)


def test_an_observed_time_decides_the_month_but_is_not_part_of_the_payload() -> None:
    """`observed_at` (when the sender saw it, not knowing when it happened) times the event
    like `occurred_at`, in the same window, and a repeat observed at another time, before
    or after, is the same usage; it cannot come with an `occurred_at`."""
    seen = NOW - timedelta(days=20)
    observed = event(observed_at=seen)
    assert (observed.occurred_at, observed.period.key) == (seen, date(2026, 4, 1))
    assert not observed.occurred_at_given
    assert event(observed_at=NOW).is_replay_of(observed)
    assert event(occurred_at=NOW - timedelta(days=2)).is_replay_of(observed)
    assert observed.is_replay_of(event(occurred_at=NOW - timedelta(days=2)))
    assert not event(observed_at=seen, quantity=11).is_replay_of(observed)
    with pytest.raises(InvalidInput) as both:
        event(occurred_at=seen, observed_at=seen)
    assert both.value.details["field"] == "observed_at"
    assert str(both.value) == (
        "an event has `occurred_at` (when it happened) or `observed_at` (when it was seen, "
        "not compared on a repeat), not both"
    )
    with pytest.raises(InvalidInput) as old:
        event(observed_at=NOW - timedelta(days=35, seconds=1))
    assert old.value.details["field"] == "observed_at"
    assert str(old.value) == ("observed_at 2026-04-10T11:59:59+00:00 is older than 35 days")
    with pytest.raises(InvalidInput) as ahead:
        event(observed_at=NOW + timedelta(minutes=5, seconds=1))
    assert (ahead.value.details["field"], str(ahead.value)) == (
        "observed_at",
        "observed_at 2026-05-15T12:05:01+00:00 is in the future (more than 300 s ahead)",
    )
    with pytest.raises(InvalidInput) as naive:
        event(observed_at=datetime(2026, 5, 15))  # noqa: DTZ001
    with pytest.raises(InvalidInput) as text:
        event(observed_at="2026-05-15T00:00:00Z")
    assert (text.value.details["field"], str(text.value)) == (
        "observed_at",
        "observed_at must be a datetime with a timezone",
    )
    assert (naive.value.details["field"], str(naive.value)) == (
        "observed_at",
        "observed_at is not usable: datetime 2026-05-15T00:00:00 has no timezone; UTC is required",
    )


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["tokens", "playbook_runs"]),
            st.integers(0, 10**6),
            st.integers(0, 35),
        ),
        max_size=50,
    )
)
def test_counter_increments_sum_per_org_period_and_metric(
    rows: list[tuple[str, str, int, int]],
) -> None:
    events = [
        event(
            org_id=org,
            metric=metric,
            quantity=q,
            idempotency_key=f"k{i}",
            occurred_at=NOW - timedelta(days=days),
        )
        for i, (org, metric, q, days) in enumerate(rows)
    ]
    increments = counter_increments(events)
    assert sum(increments.values()) == sum(q for _, _, q, _ in rows)
    assert list(increments) == sorted(increments)
    for (org, period, metric), total in increments.items():
        assert total == sum(
            e.quantity for e in events if (e.org_id, e.period.key, e.name) == (org, period, metric)
        )


@given(
    st.one_of(
        st.none(),
        st.booleans(),
        st.floats(),
        st.text(),
        st.integers(),
        st.decimals(allow_nan=False),
    )
)
def test_only_whole_numbers_in_range_are_quantities(value: object) -> None:
    valid = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (0 <= value <= MAX_EVENT_QUANTITY)
    )
    if valid:
        assert event(quantity=value).quantity == value
    else:
        with pytest.raises(InvalidInput):
            event(quantity=value)


@given(st.datetimes(timezones=st.just(UTC)))
def test_the_cheap_period_start_is_the_periods_key(moment: datetime) -> None:
    stored = UsageEvent("o", "tokens", 1, "k", moment, moment)
    assert stored.period_start == stored.period.key


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("x" * 201, r"^name must be text of at most 200 characters$"),
        (42, r"^name must be text of at most 200 characters$"),
        ("line\nbreak", "^name contains control characters$"),
        ("del\x7f", "^name contains control characters$"),
    ],
)
def test_free_text_is_at_most_its_length_and_has_no_control_characters(
    value: object, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        validate_text(value, "name", 200)  # type: ignore[arg-type]
    assert refused.value.details["field"] == "name"
    assert validate_text("x" * 200, "name", 200) == "x" * 200
    assert validate_text(None, "name", 200) is None
    assert validate_text("tab-free, spaces kept ", "name", 200) == "tab-free, spaces kept "


def test_a_time_whose_zone_gives_no_offset_is_refused_like_a_naive_one() -> None:
    class Unknown(tzinfo):
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    with pytest.raises(InvalidInput, match="no timezone"):
        validate_occurred_at(datetime(2026, 5, 15, tzinfo=Unknown()), "occurred_at")
    with pytest.raises(InvalidInput, match=r"^occurred_at must be a datetime with a timezone$"):
        validate_occurred_at("2026-05-15T12:00:00Z", "occurred_at")


def test_free_text_with_a_lone_surrogate_is_refused_and_real_unicode_kept() -> None:
    assert validate_text("Zoë 🚀 Ünïcode", "name", 200) == "Zoë 🚀 Ünïcode"
    with pytest.raises(InvalidInput, match="surrogate") as refused:
        validate_text("Zo\udceb", "name", 200)
    assert refused.value.details["field"] == "name"


YEAR_1 = datetime.min  # noqa: DTZ901 (wall-clock arithmetic: naive on purpose)
CALENDAR = datetime.max - YEAR_1  # noqa: DTZ901
OFFSETS = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
"""Every offset an RFC 3339 time can carry and the API's parser accepts (up to ±23:59)."""


def since_year_1(wall: datetime, offset: timezone) -> timedelta:
    """The UTC instant of `wall` at `offset`, as exact time since 0001-01-01T00:00 UTC."""
    return (wall - YEAR_1) - offset.utcoffset(None)


@given(st.datetimes(), OFFSETS)
def test_any_aware_time_is_its_utc_instant_or_refused_at_the_calendar_edge(
    wall: datetime, offset: timezone
) -> None:
    moment = wall.replace(tzinfo=offset)
    instant = since_year_1(wall, offset)
    if timedelta(0) <= instant <= CALENDAR:
        utc = validate_occurred_at(moment, "occurred_at")
        assert utc.tzinfo is UTC
        assert utc == moment
        assert utc.replace(tzinfo=None) == YEAR_1 + instant
    else:
        with pytest.raises(InvalidInput, match="years 1 to 9999") as refused:
            validate_occurred_at(moment, "occurred_at")
        assert refused.value.details["field"] == "occurred_at"


@given(
    st.one_of(
        st.datetimes(),
        st.datetimes(  # near the receive time too, where the window's edges are
            NOW.replace(tzinfo=None) - timedelta(days=37),
            NOW.replace(tzinfo=None) + timedelta(days=2),
        ),
    ),
    OFFSETS,
)
def test_any_event_time_is_counted_in_the_window_or_refused_per_event(
    wall: datetime, offset: timezone
) -> None:
    moment = wall.replace(tzinfo=offset)
    instant = since_year_1(wall, offset)
    now = NOW.replace(tzinfo=None) - YEAR_1
    if now - timedelta(days=35) <= instant <= now + timedelta(minutes=5):
        assert event(occurred_at=moment).occurred_at == moment
    else:
        with pytest.raises(InvalidInput) as refused:
            event(occurred_at=moment)
        assert refused.value.details["field"] == "occurred_at"


def test_properties_become_one_canonical_text() -> None:
    assert canonical_properties(None) is None
    assert canonical_properties({}) == "{}"
    assert canonical_properties({"b": 1, "a": [True, None, 1.5], "é": "ü"}) == (
        '{"a":[true,null,1.5],"b":1,"é":"ü"}'
    )
    many = {f"k{n}": n for n in range(MAX_PROPERTIES)}
    assert canonical_properties(many) is not None
    assert len(canonical_properties({"t": "x" * 4088}) or "") == 4096


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ([1], "properties must be a JSON object"),
        ("x", "properties must be a JSON object"),
        ({f"k{n}": n for n in range(51)}, "properties has 51 keys; at most 50"),
        (
            {"n": float("nan")},
            "properties must hold only JSON values: finite numbers, Unicode text",
        ),
        (
            {"n": float("inf")},
            "properties must hold only JSON values: finite numbers, Unicode text",
        ),
        ({"s": "\ud800"}, "properties must hold only JSON values: finite numbers, Unicode text"),
        ({"o": object()}, "properties must hold only JSON values: finite numbers, Unicode text"),
        ({"t": "x" * 4089}, "properties are longer than 4096 characters as JSON"),
        (
            {"s": "a\x00b"},
            "properties must not hold a NUL character (\\u0000): no database stores one",
        ),
        (
            {"o": {"l": ["\x00"]}},
            "properties must not hold a NUL character (\\u0000): no database stores one",
        ),
        (
            {"s": "\\\x00"},
            "properties must not hold a NUL character (\\u0000): no database stores one",
        ),
    ],
)
def test_what_properties_may_not_be(properties: object, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        canonical_properties(properties)
    assert refused.value.message == message
    assert refused.value.details["field"] == "properties"


@pytest.mark.parametrize("name", ["", " x", "x" * 65, "a\x00"])
def test_property_names_are_ids(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        canonical_properties({name: 1})
    assert refused.value.message.startswith("a property name ")
    assert len(canonical_properties({"k" * 64: 1}) or "") == 64 + 6


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.text(
                st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=3
            ),
            inner,
        )
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.sampled_from(["model", "é", "a b", "tokens", "1"]), JSON_VALUES))
def test_canonical_properties_are_sorted_compact_json_as_the_json_module_writes_it(
    properties: dict[str, object],
) -> None:
    written = json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert fields._one_shot_encoder()(properties) == written  # as made at import
    if len(written) <= MAX_PROPERTIES_LENGTH:
        assert canonical_properties(properties) == written


def test_a_backslash_before_the_text_u0000_is_not_a_nul() -> None:
    assert canonical_properties({"s": "\\u0000"}) == '{"s":"\\\\u0000"}'
    assert canonical_properties({"s": "\\\\u0000"}) == '{"s":"\\\\\\\\u0000"}'


def test_properties_that_contain_themselves_are_refused() -> None:
    looped: dict[str, object] = {"a": []}
    looped["a"].append(looped)  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="only JSON values"):
        canonical_properties(looped)
    for bad in (looped, {"n": float("nan")}, {"o": object()}, {(1, 2): 1}):
        with pytest.raises((ValueError, TypeError, RecursionError)):
            fields._one_shot_encoder()(bad)


def test_a_property_name_is_checked_once_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[object] = []

    def check_id(value: object, *args: Any) -> str:
        checked.append(value)
        return real(value, *args)

    real = fields.check_id
    monkeypatch.setattr(fields, "check_id", check_id)
    name = f"p{uuid.uuid4().hex}"  # a name no test has sent before
    for _ in range(3):
        assert canonical_properties({name: 1}) == f'{{"{name}":1}}'
    assert checked == [name]


def test_a_bad_property_name_is_refused_however_many_good_ones_came_before() -> None:
    for _ in range(2):
        assert canonical_properties({"model": 1, "feature": 2}) == '{"feature":2,"model":1}'
        with pytest.raises(InvalidInput, match="a property name"):
            canonical_properties({"model": 1, " model": 2})


def _id_by_the_full_rules(value: str, max_length: int) -> bool:
    """Whether an id passes, by every rule spelled out (the check takes a shortcut)."""
    return (
        value != ""
        and value.strip() == value
        and len(value) <= max_length
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value)
        and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    )


@given(
    st.text(
        st.sampled_from(
            ["a", "Z", "0", "-", " ", "\t", "\u00a0", "\u2003", "\x85", "\x7f", "\ud800"]
        )
        | st.characters(),
        max_size=6,
    ),
    st.integers(1, 5),
)
def test_an_id_passes_exactly_when_every_rule_holds(value: str, max_length: int) -> None:
    if _id_by_the_full_rules(value, max_length):
        assert validate_id(value, "org_id", max_length) == value
    else:
        with pytest.raises(InvalidInput) as refused:
            validate_id(value, "org_id", max_length)
        assert refused.value.details["field"] == "org_id"


# The bound on what a month may come to


def test_a_charge_is_its_usage_beyond_what_is_included_priced_as_an_invoice_line() -> None:
    assert Charge(1_500, 1_000, Decimal("0.02"), 1_000).amount == Decimal("0.01")
    assert Charge(1_000_025, 1_000_000, Decimal("0.02"), 1_000).amount == Decimal("0.00")
    assert Charge(1_000_250, 1_000_000, Decimal("0.02"), 1_000).amount == Decimal("0.01")
    assert Charge(210, 200, Decimal("0.25"), 1).amount == Decimal("2.50")
    assert Charge(200, 200, Decimal("0.25"), 1).amount == Decimal("0.00")
    assert Charge(150, 200, Decimal("0.25"), 1).amount == Decimal("0.00")  # within: nothing


def test_a_charge_prices_by_the_model_and_tiers_its_plan_stored() -> None:
    tiers = tiers_text((Tier(100, Decimal("1")), Tier(None, Decimal("0.5"), Decimal("10"))))
    # 150 beyond: 100 x 1 + 50 x 0.5 + 10 graduated; all 150 x 0.5 + 10 by volume
    assert Charge(250, 100, Decimal(0), 1, "graduated", tiers).amount == Decimal("135.00")
    assert Charge(250, 100, Decimal(0), 1, "volume", tiers).amount == Decimal("85.00")
    assert Charge(250, 100, Decimal(3), 100, "package").amount == Decimal("6.00")
    assert Charge(250, 100, Decimal(3), 100, "per_unit").amount == Decimal("4.50")
    assert Charge(250, 100, Decimal(3), 100).amount == Decimal("4.50")  # no model: per unit


def test_a_charge_is_read_from_the_price_terms_its_plan_stored_in_one_text() -> None:
    assert charge_of(1_500, 1_000, "0.020000 1000 per_unit ") == Charge(
        1_500, 1_000, Decimal("0.02"), 1_000, "per_unit", None
    )
    tiers = tiers_text((Tier(100, Decimal("1")), Tier(None, Decimal("0.5"), Decimal("10"))))
    assert charge_of(250, 100, f"0 1 graduated {tiers}") == Charge(
        250, 100, Decimal(0), 1, "graduated", tiers
    )
    assert charge_of(250, 100, None) == Charge(250, 100, None, None)
    spaced = '[{"up_to": null, "unit_price": "0.5", "flat_fee": "0"}]'  # JSON written otherwise
    assert charge_of(250, 100, f"0 1 volume {spaced}").amount == Decimal("75.00")
    assert charge_of(250, 100, f"0 1 volume {spaced}\x1f") == charge_of(
        250, 100, f"0 1 volume {spaced}"
    )


def test_a_metric_priced_per_value_is_charged_the_most_its_usage_could_cost() -> None:
    """As usage is written its split among values is not known: the bound on a month
    takes every unit beyond at the dearest rate of its prices."""
    model = Dimension(
        "model",
        (
            ValuePrice("gpt-5 pro", Price(unit_price=Decimal("0.10"), unit_size=1_000)),
            ValuePrice("mini", Price(PriceModel.PACKAGE, Decimal("5"), 1_000)),
        ),
    )
    terms = f"0.020000 1000 per_unit \x1f{dimension_text(model)}"
    charge = charge_of(101_000, 1_000, terms)
    assert (charge.unit_price, charge.dimension) == (Decimal("0.02"), dimension_text(model))
    # 100,000 x 5 / 1,000 (the package's rate), a whole package, a cent for each price
    assert charge.amount == Decimal("505.03")
    assert charge_of(1_000, 1_000, terms).amount == Decimal("0.00")


def test_an_unlimited_or_unpriced_counter_charges_nothing() -> None:
    assert Charge(10**15, None, Decimal("0.25"), 1).amount == Decimal("0.00")
    assert Charge(10**15, 0, None, None).amount == Decimal("0.00")
    assert Charge(10**15, 0, Decimal("0.25"), None).amount == Decimal("0.00")
    assert Charge(10**15, 0, None, 1).amount == Decimal("0.00")
    assert Charge(10**15, 0, Decimal("0"), 1).amount == Decimal("0.00")


def moved(amount: Decimal, *, in_full: bool = False) -> Moved:
    """A counter a write left charging `amount`."""
    return Moved(Reading(1, AlertTerms(None, "")), Charge(1, 0, amount, 1), in_full)


def test_a_month_is_priced_in_full_when_the_counters_touched_come_to_near_the_bound() -> None:
    may, june = date(2026, 5, 1), date(2026, 6, 1)
    half = NEAR_BOUND / 2
    touched = {
        ("a", may, "tokens"): moved(half),
        ("a", may, "playbook_runs"): moved(half),  # together: NEAR_BOUND
        ("a", june, "tokens"): moved(half),  # another month of the same org
        ("b", may, "tokens"): moved(NEAR_BOUND - Decimal("0.01")),
        ("c", may, "tokens"): moved(NEAR_BOUND),
    }
    assert months_to_price(touched) == {("a", may), ("c", may)}
    assert months_to_price({}) == set()
    assert Decimal("976562500.00") == NEAR_BOUND  # a 1,024th of the bound, in cents


def test_a_month_once_near_the_bound_is_priced_in_full_by_every_write() -> None:
    may = date(2026, 5, 1)
    touched = {
        ("a", may, "tokens"): moved(Decimal("0.01"), in_full=True),
        ("a", may, "playbook_runs"): moved(Decimal("0.01")),
        ("b", may, "tokens"): moved(Decimal("0"), in_full=True),
        ("c", may, "tokens"): moved(Decimal("0.01")),
    }
    assert months_to_price(touched) == {("a", may), ("b", may)}


def test_a_month_totals_its_plans_fee_and_every_counters_charge() -> None:
    charges = [Charge(210, 200, Decimal("0.25"), 1), Charge(1_500, 1_000, Decimal("0.02"), 1_000)]
    assert month_total(Decimal("49.00"), charges) == Decimal("51.51")
    assert month_total(None, charges) == Decimal("2.51")  # no plan: no fee
    assert month_total(Decimal("49.00"), []) == Decimal("49.00")
    assert month_total(None, []) == Decimal("0.00")


def test_an_event_is_refused_when_it_takes_its_month_beyond_the_largest_amount() -> None:
    assert beyond_bounds("org-1", date(2026, 4, 1), MAX_AMOUNT) is None
    refusal = beyond_bounds("org-1", date(2026, 4, 1), MAX_AMOUNT + Decimal("0.01"))
    assert isinstance(refusal, AmountOutOfBounds)
    assert refusal.status == 422
    assert refusal.code == "amount_out_of_bounds"
    assert refusal.message == (
        "with this event, the invoice of org 'org-1' for 2026-04 would come to "
        "1,000,000,000,000.00 at its terms now, beyond the 999,999,999,999.99 an amount may "
        "be; it was not counted"
    )
    assert refusal.details == {"org_id": "org-1", "period": "2026-04"}


def test_an_event_no_metric_counts_is_refused_or_kept_counting_toward_nothing() -> None:
    """The native API refuses an event of a name no metric counts; the incumbents'
    protocols keep it (`keep_uncounted`), counting toward nothing, as the incumbents do."""
    fields_sent = {
        "org_id": "acme",
        "metric": None,
        "quantity": None,
        "idempotency_key": "k1",
        "occurred_at": None,
        "event": "nobody.listens",
        "properties": {"value": 3},
    }
    with pytest.raises(UnknownEvent, match=r"no metric counts events named 'nobody\.listens'"):
        Intake(NOW, CATALOGUE, WINDOW).judge(**fields_sent)
    kept = Intake(NOW, CATALOGUE, WINDOW, keep_uncounted=True).judge(**fields_sent)
    assert (kept.name, kept.lines, kept.skipped) == ("nobody.listens", (), ())
    counted = Intake(NOW, CATALOGUE, WINDOW, keep_uncounted=True).judge(
        **fields_sent | {"event": "tokens"}
    )
    assert [line.metric for line in counted.lines] == ["tokens"]


def test_an_event_is_counted_when_it_reports_a_quantity_or_has_a_line() -> None:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    report = UsageEvent("acme", "tokens", 0, "k1", at, at)
    named = UsageEvent("acme", "llm.call", None, "k2", at, at, lines=(Line("tokens", 3),))
    kept = UsageEvent("acme", "nobody", None, "k3", at, at)
    assert (report.counted, named.counted, kept.counted) == (True, True, False)


def test_an_event_no_metric_counts_stands_first_among_its_keys_lines() -> None:
    at = datetime(2026, 11, 2, tzinfo=UTC)
    kept = StoredEvent("k", None, 0, at, at, None)
    counted = StoredEvent("k", "tokens", 3, at, at, None)
    assert kept.position == (at, "k", "")
    assert counted.position == (at, "k", "tokens")


def test_a_months_events_are_kept_whole_months_past_its_end_and_while_they_may_arrive() -> None:
    january, december = date(2026, 1, 1), date(2026, 12, 1)
    five_weeks = timedelta(days=35)
    assert kept_until(january, 1, timedelta(days=20)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert kept_until(january, 2, five_weeks) == datetime(2026, 4, 1, tzinfo=UTC)
    assert kept_until(january, 1, five_weeks) == datetime(2026, 3, 8, tzinfo=UTC)  # the age
    assert kept_until(january, 1, timedelta(days=28)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert kept_until(december, 1, timedelta(days=1)) == datetime(2027, 2, 1, tzinfo=UTC)
    assert kept_until(december, 13, timedelta(days=1)) == datetime(2028, 2, 1, tzinfo=UTC)
