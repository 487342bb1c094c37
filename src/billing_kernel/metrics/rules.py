"""Metrics are data: a key per counter and per plan limit, so a deployment can add its own.
A metric is also a meter: the event names it counts, how it aggregates them (the sum of an
amount, how many there are, the highest amount, the last one, or how many distinct values of
a property), the property it reads, and equality filters on the others."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import NamedTuple

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.common.validation import MAX_EVENT_QUANTITY, validate_id, validate_text
from billing_kernel.errors import InvalidInput, UnknownEvent
from billing_kernel_sdk import fields

TOKENS = "tokens"
PLAYBOOK_RUNS = "playbook_runs"
SEATS = "seats"

METRIC_KEY_PATTERN_TEXT = r"^[a-z][a-z0-9_]{0,63}$"
"""What a metric's key is: 1 to 64 lowercase letters, digits and _, starting with a letter
(the API's schema states the same pattern)."""
METRIC_KEY_PATTERN = re.compile(METRIC_KEY_PATTERN_TEXT)


EVENT_NAME_PATTERN_TEXT = fields.EVENT_NAME_PATTERN_TEXT
"""What an event's name is: any text of 1 to 255 characters without control characters
(the API's schema states the same pattern)."""
MAX_METER_EVENTS = 20
MAX_FILTERS = 10
VALUE_PROPERTIES = ("value", "quantity")
"""Where a sum meter without a property of its own reads an event's amount: the first of
these the event has (Stripe's and the common default)."""

FilterValue = str | int | bool
"""What a filter compares a property with: JSON text, a whole number, or a boolean."""


class Aggregation(StrEnum):
    """How a metric's usage in a period is computed."""

    SUM = "sum"
    """The sum of an amount per event: a property's value, or a report's quantity."""
    COUNT = "count"
    """How many events it counts (a report of a quantity counts as that many)."""
    MAX = "max"
    """The highest amount one event carried in the period (peak concurrency, say): each
    event's line keeps its amount, and the period's usage is the highest of them."""
    LATEST = "latest"
    """The amount of the period's last event by event time (a gauge: storage in use, say):
    each event's line keeps its amount, and the period's usage is that of the last line
    (by event time, then idempotency key)."""
    UNIQUE_COUNT = "unique_count"
    """How many distinct values of a property its events carry in the period (users who
    called, say): each event adds 1 when its value is new in the period, else 0."""
    SEATS = "seats"
    """The number of org members; the counter keeps the period's peak."""


METER_AGGREGATIONS = (
    Aggregation.SUM,
    Aggregation.COUNT,
    Aggregation.MAX,
    Aggregation.LATEST,
    Aggregation.UNIQUE_COUNT,
)
"""The aggregations a meter may be defined with (seats are counted from members)."""
TAKEN_NOT_ADDED = (Aggregation.MAX, Aggregation.LATEST)
"""Those whose period usage is one of their lines (the highest, the last), not their sum."""
ADDITIVE = (Aggregation.SUM, Aggregation.COUNT)
"""Those whose usage is a sum of quantities: recorded, consumed and reserved as one."""


class Position(NamedTuple):
    """Where a line stands among its period's: by event time, then idempotency key."""

    occurred_at: datetime
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Tally:
    """What a group of one metric's lines in a period comes to: their sum, how many, the
    highest, and the last (where it stands, and its quantity)."""

    quantity: int = 0
    events: int = 0
    highest: int = 0
    last_at: Position | None = None
    last: int = 0

    def plus(self, quantity: int, at: Position | None = None) -> Tally:
        """With one more line of `quantity`, standing `at`."""
        later = at is not None and (self.last_at is None or at > self.last_at)
        return Tally(
            self.quantity + quantity,
            self.events + 1,
            max(self.highest, quantity),
            at if later else self.last_at,
            quantity if later else self.last,
        )


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    name: str
    unit: str
    aggregation: Aggregation = Aggregation.SUM
    events: tuple[str, ...] = ()
    """The names of the events it counts; none given: its own key."""
    value_property: str | None = None
    """A sum's amount property (None: `value`, else `quantity`: VALUE_PROPERTIES); a
    unique count's counted property."""
    filters: tuple[tuple[str, FilterValue], ...] = ()
    """(property, value) pairs, by property: an event counts only if it has every one."""
    required: bool = False
    """Whether an event it counts must carry its property: one that does not (or carries no
    usable amount) is then refused whole. Otherwise this meter skips it, and it still
    counts toward the others (`read_event`)."""

    @property
    def is_recordable(self) -> bool:
        """Whether usage may be recorded against it as a quantity (and consumed or reserved):
        seats follow membership, and a unique count is not a sum of quantities."""
        return self.aggregation in ADDITIVE

    @property
    def is_additive(self) -> bool:
        """Whether its usage in a period is the sum of its lines (not a max's highest nor a
        latest's last)."""
        return self.aggregation not in TAKEN_NOT_ADDED

    def period_usage(self, lines: Tally) -> int:
        """Its usage in a period with these lines: their sum, a max's highest, or a
        latest's last."""
        if self.aggregation is Aggregation.MAX:
            return lines.highest
        if self.aggregation is Aggregation.LATEST:
            return lines.last
        return lines.quantity

    def usage_added(self, lines: Tally, billed: int, billed_last: Position | None) -> int:
        """What `lines` of a period, which arrived after `billed` was billed of it (its last
        line then standing at `billed_last`), change its usage by: their sum; for a max, how
        far their highest goes past what was billed (a lower one changes nothing); for a
        latest, the difference their last makes if it stands after the last billed (it may
        be below what was billed: a credit), else nothing."""
        if self.aggregation is Aggregation.MAX:
            return max(0, lines.highest - billed)
        if self.aggregation is Aggregation.LATEST:
            later = lines.last_at is not None and (
                billed_last is None or lines.last_at > billed_last
            )
            return lines.last - billed if later else 0
        return lines.quantity

    @property
    def counts_events(self) -> bool:
        """Whether events count toward it (all but seats)."""
        return self.aggregation in METER_AGGREGATIONS

    @property
    def listens_to(self) -> tuple[str, ...]:
        """The event names it counts."""
        return self.events or (self.key,)

    def counts(self, properties: Mapping[str, object]) -> bool:
        """Whether an event with these properties passes every filter: the property is
        there with the same JSON value (`true` is not `1`)."""
        return all(
            name in properties and _same_json(properties[name], wanted)
            for name, wanted in self.filters
        )

    def amount(self, properties: Mapping[str, object]) -> int:
        """What one event it counts adds (for a max, the amount it may raise the period's
        usage to; for a latest, the amount it may set it to): 1 for a count, else the amount
        property's value, a whole number from 0 to MAX_EVENT_QUANTITY (InvalidInput naming
        the property)."""
        if self.aggregation is Aggregation.COUNT:
            return 1
        if self.aggregation is Aggregation.UNIQUE_COUNT:
            self.unique_value(properties)  # it must have one
            return 1
        names = VALUE_PROPERTIES if self.value_property is None else (self.value_property,)
        for name in names:
            if name in properties:
                amount = whole_number(properties[name], f"properties.{name}")
                if not 0 <= amount <= MAX_EVENT_QUANTITY:
                    raise InvalidInput(
                        f"properties.{name} must be from 0 to {MAX_EVENT_QUANTITY}, got {amount}",
                        field=f"properties.{name}",
                    )
                return amount
        raise InvalidInput(
            f"metric {self.key!r} {_READS[self.aggregation]} property "
            f"{either(names)}, which the event does not have",
            field=f"properties.{names[0]}",
        )

    def unique_value(self, properties: Mapping[str, object]) -> str | None:
        """For a unique count, the value it counts, as canonical JSON text (`"u1"` and `1`
        are two values); InvalidInput naming the property when the event has none. None for
        other aggregations."""
        if self.aggregation is not Aggregation.UNIQUE_COUNT:
            return None
        name = self.value_property or ""
        if name not in properties:
            raise InvalidInput(
                f"metric {self.key!r} counts unique values of property `{name}`, which the "
                "event does not have",
                field=f"properties.{name}",
            )
        return json.dumps(
            properties[name], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )


_READS = {Aggregation.SUM: "sums", Aggregation.MAX: "peaks on", Aggregation.LATEST: "reads"}
"""How an error names what a metric does with its amount property."""


def either(names: Sequence[str]) -> str:
    """`a` (or `b`): the properties an amount is read from, the first present."""
    return f"`{names[0]}`" + "".join(f" (or `{name}`)" for name in names[1:])


def _same_json(value: object, wanted: FilterValue) -> bool:
    """Equal as JSON values: of one type (`True` is not `1`) and equal."""
    return type(value) is type(wanted) and value == wanted


_DIGITS = re.compile(r"^[0-9]+$")


def whole_number(value: object, field: str) -> int:
    """`value` as a whole number (a JSON integer, an integral JSON number such as 3.0, or a
    string of digits, as form encoding sends every value), or InvalidInput naming `field`
    (the range is the caller's to check)."""
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        return value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _DIGITS.fullmatch(value)
    ):
        return int(value)
    raise InvalidInput(f"{field} must be a whole number, got {value!r:.40}", field=field)


class Reading(NamedTuple):
    """What the meters listening to an event made of it."""

    counted: list[tuple[Metric, int]]
    """The meters it counts toward, with what it adds to each, in key order."""
    skipped: tuple[str, ...]
    """The keys of the meters whose filters admit it but that could not read their property
    from it (missing, or not a usable amount), so did not count it: `not_counted_by`."""


def counting_meters(
    name: str, properties: Mapping[str, object], catalogue: Mapping[str, Metric]
) -> Reading:
    """What the metrics that count events named `name` make of one with these properties
    (`read_event`). UnknownEvent when no metric counts events of that name (one whose
    filters leave the event out counts it as nothing)."""
    return read_event(listening_meters(name, catalogue), properties)


def read_event(meters: Sequence[Metric], properties: Mapping[str, object]) -> Reading:
    """Of `meters`, those whose filters an event with these properties passes, each with
    what it adds; one that cannot read its property from it skips it, and no meter makes
    another refuse it. Only a `required` meter that cannot read its property refuses the
    event whole (InvalidInput naming the meter and the property)."""
    counted: list[tuple[Metric, int]] = []
    skipped: list[str] = []
    for meter in meters:
        if not meter.counts(properties):
            continue
        try:
            counted.append((meter, meter.amount(properties)))
        except InvalidInput as unreadable:
            if meter.required:
                said = unreadable.message
                if not said.startswith(f"metric {meter.key!r} "):
                    said = f"metric {meter.key!r}: {said}"
                raise InvalidInput(
                    f"{said} (required)", field=unreadable.details["field"]
                ) from None
            skipped.append(meter.key)
    return Reading(counted, tuple(skipped))


PREVIEW_EVENTS = 100_000
"""How many of last month's events a meter's definition is tried on, at most."""


@dataclass(frozen=True, slots=True)
class MeterPreview:
    """What a meter, as defined now, would have made of a month's events of its names."""

    period: BillingPeriod
    events: int
    """The events of its names tried (all of the month's, when `complete`)."""
    counted: int
    """Of those, the ones it would have counted."""
    not_counted: int
    """Of those, the ones its filters admitted but whose property it could not read: it
    would have skipped them (refused them, were it `required`)."""
    complete: bool
    """Whether every event of its names in the month was tried (else the first
    PREVIEW_EVENTS found)."""


def preview_meter(
    meter: Metric, period: BillingPeriod, events: Sequence[str | None]
) -> MeterPreview:
    """`meter` tried on `events`, the properties (canonical JSON text, or None) of events of
    its names in `period`; more than PREVIEW_EVENTS of them: the first PREVIEW_EVENTS."""
    tried = events[:PREVIEW_EVENTS]
    counted = not_counted = 0
    for text in tried:
        properties = json.loads(text) if text else {}
        if not isinstance(properties, Mapping) or not meter.counts(properties):
            continue
        try:
            meter.amount(properties)
        except InvalidInput:
            not_counted += 1
        else:
            counted += 1
    return MeterPreview(period, len(tried), counted, not_counted, len(events) == len(tried))


def listening_meters(name: str, catalogue: Mapping[str, Metric]) -> list[Metric]:
    """The metrics that count events named `name`, in key order, whatever their filters;
    UnknownEvent when there are none."""
    listening = [m for m in catalogue.values() if m.counts_events and name in m.listens_to]
    if not listening:
        names = sorted({n for m in catalogue.values() if m.counts_events for n in m.listens_to})
        raise UnknownEvent(
            f"no metric counts events named {name!r}; counted: {', '.join(names)}",
            field="event",
        )
    return sorted(listening, key=lambda m: m.key)


def validate_event_name(value: object) -> str:
    """An event name (`fields.check_event_name`: any text of 1 to 255 characters without
    control characters, kept as sent), or InvalidInput."""
    try:
        return fields.check_event_name(value)
    except fields.FieldError as exc:
        raise InvalidInput(f"{exc}, got {value!r:.40}", field="event") from None


def new_meter(
    key: object,
    *,
    name: object,
    unit: object,
    aggregation: object,
    events: Sequence[object] | None = None,
    value_property: object = None,
    filters: Mapping[str, object] | None = None,
    required: object = False,
) -> Metric:
    """A meter definition from raw fields, or InvalidInput naming the first bad one."""
    if not isinstance(key, str) or not METRIC_KEY_PATTERN.fullmatch(key):
        raise InvalidInput(
            "key must be 1-64 lowercase letters, digits and _, starting with a letter",
            field="key",
        )
    if aggregation not in METER_AGGREGATIONS:
        allowed = ", ".join(METER_AGGREGATIONS)
        raise InvalidInput(
            f"aggregation must be one of {allowed}, got {aggregation!r:.40}", field="aggregation"
        )
    kind = Aggregation(str(aggregation))
    names = list(events or [key])
    if len(names) > MAX_METER_EVENTS:
        raise InvalidInput(f"events has more than {MAX_METER_EVENTS} names", field="events")
    checked = tuple(dict.fromkeys(validate_event_name(n) for n in names))
    amount_from = None if value_property is None else validate_id(value_property, "value_property")
    if amount_from is not None and kind is Aggregation.COUNT:
        raise InvalidInput(
            "a count reads no property: leave value_property out", field="value_property"
        )
    if amount_from is None and kind is Aggregation.UNIQUE_COUNT:
        raise InvalidInput(
            "a unique count needs value_property: the property whose values it counts",
            field="value_property",
        )
    if not isinstance(required, bool):
        raise InvalidInput("required must be true or false", field="required")
    if required and kind is Aggregation.COUNT:
        raise InvalidInput(
            "a count reads no property, so none can be required: leave required out",
            field="required",
        )
    if filters is not None and len(filters) > MAX_FILTERS:
        raise InvalidInput(f"filters has more than {MAX_FILTERS} properties", field="filters")
    wanted: list[tuple[str, FilterValue]] = []
    for prop, value in (filters or {}).items():
        validate_id(prop, "a filter's property")
        if not isinstance(value, str | int):
            raise InvalidInput(
                f"filters.{prop} must be text, a whole number or a boolean",
                field=f"filters.{prop}",
            )
        wanted.append((prop, value))
    return Metric(
        key=key,
        name=_required_text(name, "name", 128),
        unit=_required_text(unit, "unit", 32),
        aggregation=kind,
        events=() if checked == (key,) else checked,
        value_property=amount_from,
        filters=tuple(sorted(wanted)),
        required=required,
    )


def _required_text(value: object, what: str, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} is required", field=what)
    checked = validate_text(value, what, max_length)
    assert checked is not None
    return checked


def meter_change(stored: Metric, new: Metric) -> Metric:
    """`new` as the definition of the stored metric from now on, or InvalidInput: seats are
    counted from members, and an aggregation never changes (usage already counted one way
    would be read another: define a new metric)."""
    if not stored.counts_events:
        raise InvalidInput(f"metric {stored.key!r} is counted from org members", field="key")
    if new.aggregation is not stored.aggregation:
        raise InvalidInput(
            f"metric {stored.key!r} is a {stored.aggregation}; an aggregation cannot change "
            "(define a new metric)",
            field="aggregation",
        )
    return new


def events_text(metric: Metric) -> str | None:
    """How a meter's event names are stored: a JSON list, or NULL for its own key."""
    return json.dumps(list(metric.events)) if metric.events else None


def filters_text(metric: Metric) -> str | None:
    """How a meter's filters are stored: a JSON object, or NULL for none."""
    return json.dumps(dict(metric.filters), sort_keys=True) if metric.filters else None


def meter_from_stored(
    key: str,
    name: str,
    unit: str,
    aggregation: str,
    events: str | None,
    value_property: str | None,
    filters: str | None,
    required: bool,
) -> Metric:
    """A metric as its row keeps it (see `events_text`, `filters_text`)."""
    return Metric(
        key=key,
        name=name,
        unit=unit,
        aggregation=Aggregation(aggregation),
        events=tuple(json.loads(events)) if events else (),
        value_property=value_property,
        filters=tuple(sorted(json.loads(filters).items())) if filters else (),
        required=required,
    )


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


def months_to_carry_seats(
    last_recorded: date | None, current: BillingPeriod
) -> list[BillingPeriod]:
    """The months whose seat peak a membership change writes down before it changes
    anything: those after the last month with a recorded peak (`last_recorded`, its first
    day) and before `current`. No change touched the membership in them, so each had the
    count from before this change throughout. None recorded: the org never had a member
    change, so there is nothing to carry."""
    if last_recorded is None:
        return []
    months = []
    month = BillingPeriod.starting(last_recorded).next()
    while month.key < current.key:
        months.append(month)
        month = month.next()
    return months


def seats_in_month(
    recorded: int | None,
    month: date,
    *,
    current: date,
    last_recorded: date | None,
    members_now: int,
) -> int:
    """The seat peak of the month starting `month`. Every membership change records the
    peak of its month and carries the count into the months before it that had none (see
    `months_to_carry_seats`), so a month without a recorded peak is either after the last
    change (the membership has not changed since: today's count) or before the first one
    (no member yet: 0). The `current` month's peak is never below today's count; a month
    that has not begun has none."""
    if month > current:
        return 0
    if month == current:
        return max(recorded or 0, members_now)
    if recorded is not None:
        return recorded
    if last_recorded is None or month > last_recorded:
        return members_now
    return 0


DEFAULT_METRICS: tuple[Metric, ...] = (
    Metric(TOKENS, "LLM tokens", "tokens"),
    Metric(PLAYBOOK_RUNS, "Playbook runs", "runs"),
    Metric(SEATS, "Seats", "seats", Aggregation.SEATS),
)
