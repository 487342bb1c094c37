"""Usage events and the rules an event must pass before anything is written."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from billing_kernel.domain.metrics import Metric
from billing_kernel.domain.periods import BillingPeriod, ensure_utc
from billing_kernel.errors import InvalidInput, UnknownMetric

MAX_EVENT_QUANTITY = 10**12
"""The largest quantity one event may carry; anything above is taken for a bug upstream."""
MAX_ID_LENGTH = 64
"""Org and user ids are the product's own, up to this many characters."""
MAX_IDEMPOTENCY_KEY_LENGTH = 255
ID_PATTERN_TEXT = r"^[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f])?$"
"""What an id or key may be: no control characters, no leading or trailing white space."""
ID_PATTERN = re.compile(ID_PATTERN_TEXT)


def validate_id(value: object, what: str, max_length: int = MAX_ID_LENGTH) -> str:
    """A non-empty printable string of at most `max_length` characters, or InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string", field=what)
    if not value or value.strip() != value:
        raise InvalidInput(
            f"{what} must be non-empty, without leading or trailing spaces", field=what
        )
    if len(value) > max_length:
        raise InvalidInput(f"{what} is longer than {max_length} characters", field=what)
    if not ID_PATTERN.fullmatch(value):
        raise InvalidInput(f"{what} contains control characters", field=what)
    return _storable(value, what)


def validate_text(value: str | None, what: str, max_length: int) -> str | None:
    """Optional free text (a name, an email): at most `max_length` characters, no control
    characters (PostgreSQL cannot even store a NUL)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(f"{what} must be text of at most {max_length} characters", field=what)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"{what} contains control characters", field=what)
    return _storable(value, what)


def _storable(value: str, what: str) -> str:
    """`value` if it is Unicode text a database can store. JSON can carry a lone UTF-16
    surrogate (`"\\ud800"`), which no UTF-8 column (PostgreSQL's or SQLite's) can hold."""
    if not value.isascii():  # the common case costs one C-level scan
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(
                f"{what} contains a lone UTF-16 surrogate, which is not Unicode text",
                field=what,
            ) from None
    return value


def validate_occurred_at(value: object) -> datetime:
    """An event time as a UTC datetime: it must be a datetime with a timezone whose UTC
    instant is inside the calendar (an offset can push year 1 or 9999 out of it)."""
    if not isinstance(value, datetime):
        raise InvalidInput("occurred_at must be a datetime with a timezone", field="occurred_at")
    try:
        return ensure_utc(value)
    except ValueError as exc:
        raise InvalidInput(f"occurred_at is not usable: {exc}", field="occurred_at") from None


def validate_quantity(value: object) -> int:
    """A whole number of units from 0 to MAX_EVENT_QUANTITY, or InvalidInput."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("quantity must be a whole number", field="quantity")
    if value < 0:
        raise InvalidInput("quantity must not be negative", field="quantity")
    if value > MAX_EVENT_QUANTITY:
        raise InvalidInput(
            f"quantity {value} is above the per-event maximum of {MAX_EVENT_QUANTITY}",
            field="quantity",
        )
    return value


def validate_metric(key: object, catalogue: Mapping[str, Metric]) -> Metric:
    """The catalogue entry for `key` if events may be recorded against it."""
    if not isinstance(key, str) or key not in catalogue:
        known = ", ".join(sorted(m.key for m in catalogue.values() if m.is_recordable))
        raise UnknownMetric(f"unknown metric {key!r}; known metrics: {known}", field="metric")
    metric = catalogue[key]
    if not metric.is_recordable:
        raise InvalidInput(
            f"metric {key!r} is counted from org members and cannot be recorded as usage",
            field="metric",
        )
    return metric


@dataclass(frozen=True, slots=True)
class EventTimeWindow:
    """How far from the receive time an event time may be."""

    max_clock_skew: timedelta
    max_age: timedelta

    def check(self, occurred_at: datetime, received_at: datetime) -> datetime:
        """`occurred_at` in UTC if it is a usable time inside the window, else InvalidInput."""
        occurred = validate_occurred_at(occurred_at)
        if occurred > received_at + self.max_clock_skew:
            raise InvalidInput(
                f"occurred_at {occurred.isoformat()} is in the future "
                f"(more than {int(self.max_clock_skew.total_seconds())} s ahead)",
                field="occurred_at",
            )
        if occurred < received_at - self.max_age:
            raise InvalidInput(
                f"occurred_at {occurred.isoformat()} is older than {self.max_age.days} days",
                field="occurred_at",
            )
        return occurred


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One validated unit of reported usage. `(org_id, idempotency_key)` identifies it."""

    org_id: str
    metric: str
    quantity: int
    idempotency_key: str
    occurred_at: datetime
    received_at: datetime
    occurred_at_given: bool = True

    @property
    def period(self) -> BillingPeriod:
        """The event time, not the receive time, decides the period."""
        return BillingPeriod.containing(self.occurred_at)

    @property
    def period_start(self) -> date:
        """`period.key`, cheaply: `occurred_at` is already UTC (this is on the ingest path)."""
        return date(self.occurred_at.year, self.occurred_at.month, 1)

    def is_replay_of(self, stored: UsageEvent) -> bool:
        """Whether `self` repeats `stored`: same metric and quantity, and the same event time
        when the caller gave one (a time the kernel stamped is not part of the payload)."""
        return (
            self.metric == stored.metric
            and self.quantity == stored.quantity
            and (not self.occurred_at_given or self.occurred_at == stored.occurred_at)
        )


def new_usage_event(
    *,
    org_id: object,
    metric: object,
    quantity: object,
    idempotency_key: object,
    occurred_at: datetime | None,
    received_at: datetime,
    catalogue: Mapping[str, Metric],
    window: EventTimeWindow,
) -> UsageEvent:
    """Validate raw event fields; raises InvalidInput (or UnknownMetric) naming the bad field."""
    received = ensure_utc(received_at)
    return UsageEvent(
        org_id=validate_id(org_id, "org_id"),
        metric=validate_metric(metric, catalogue).key,
        quantity=validate_quantity(quantity),
        idempotency_key=validate_id(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH),
        occurred_at=received if occurred_at is None else window.check(occurred_at, received),
        received_at=received,
        occurred_at_given=occurred_at is not None,
    )


CounterKey = tuple[str, date, str]
"""(org_id, period start, metric): one usage counter row."""


def counter_increments(events: Iterable[UsageEvent]) -> dict[CounterKey, int]:
    """The amount to add to each counter for `events`, in a stable (deadlock-free) order."""
    totals: dict[CounterKey, int] = {}
    for event in events:
        key = (event.org_id, event.period_start, event.metric)
        totals[key] = totals.get(key, 0) + event.quantity
    return dict(sorted(totals.items()))
