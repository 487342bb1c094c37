"""Usage events and the rules an event must pass before anything is written.

`Line`, `UsageEvent` and `UsageOutcome` are made once per event on the ingestion path:
slotted dataclasses that are not frozen (a frozen one's `__init__` costs two to three times
as much), though none is changed once made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from billing_kernel.alerts.rules import AlertTerms
from billing_kernel.common.keys import CounterKey
from billing_kernel.common.periods import BillingPeriod, ensure_utc
from billing_kernel.common.validation import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    canonical_properties,
    validate_id,
    validate_occurred_at,
    validate_quantity,
)
from billing_kernel.errors import BillingError, InvalidInput, UnknownEvent, UnknownMetric
from billing_kernel.metrics.rules import (
    TAKEN_NOT_ADDED,
    Aggregation,
    Metric,
    Position,
    listening_meters,
    read_event,
    validate_event_name,
)
from billing_kernel.usage.bounds import Moved


class RecordStatus(StrEnum):
    ACCEPTED = "accepted"
    """The event was new and has been counted."""
    DUPLICATE = "duplicate"
    """The key was seen before with the same payload; nothing changed."""
    CONFLICT = "conflict"
    """The key was seen before with a different payload; nothing changed."""
    REFUSED = "refused"
    """The event was not counted; its error says why."""


class UsageReportLike(Protocol):
    """What `UsageService.record_batch` reads of each event: a UsageReport, or any object
    with these attributes (the HTTP layer passes its parsed request bodies as they are)."""

    @property
    def org_id(self) -> object: ...
    @property
    def metric(self) -> object: ...
    @property
    def quantity(self) -> object: ...
    @property
    def idempotency_key(self) -> object: ...
    @property
    def occurred_at(self) -> datetime | None: ...
    @property
    def properties(self) -> object: ...
    @property
    def event(self) -> object: ...
    @property
    def observed_at(self) -> datetime | None: ...


@dataclass(frozen=True, slots=True)
class UsageReport:
    """One usage event as a caller sent it, before validation: a quantity of one metric, or
    an `event` name whose metrics read its properties (`metric` and `quantity` None)."""

    org_id: object
    metric: object
    quantity: object
    idempotency_key: object
    occurred_at: datetime | None = None
    properties: object = None
    event: object = None
    observed_at: datetime | None = None
    """Instead of `occurred_at`: when the sender saw the usage, not knowing when it
    happened. It decides the month, but is not part of the payload (see `is_replay_of`)."""


def validate_metric(key: object, catalogue: Mapping[str, Metric]) -> Metric:
    """The catalogue entry for `key` if events may be recorded against it."""
    if not isinstance(key, str) or key not in catalogue:
        known = ", ".join(sorted(m.key for m in catalogue.values() if m.is_recordable))
        raise UnknownMetric(f"unknown metric {key!r}; known metrics: {known}", field="metric")
    metric = catalogue[key]
    if metric.aggregation is Aggregation.SEATS:
        raise InvalidInput(
            f"metric {key!r} is counted from org members and cannot be recorded as usage",
            field="metric",
        )
    if not metric.is_recordable:
        raise InvalidInput(
            f"metric {key!r} is a {metric.aggregation} of named events, not a sum of "
            "quantities: it cannot be recorded, consumed or reserved as a quantity",
            field="metric",
        )
    return metric


@dataclass(frozen=True, slots=True)
class EventTimeWindow:
    """How far from the receive time an event time may be."""

    max_clock_skew: timedelta
    max_age: timedelta

    def bounds(self, received_at: datetime) -> tuple[datetime, datetime]:
        """The earliest and the latest event time accepted for events received at
        `received_at`, both included."""
        return received_at - self.max_age, received_at + self.max_clock_skew

    def refusal(self, occurred: datetime, received_at: datetime, field: str) -> InvalidInput:
        """Why `occurred` (sent as `field`), outside `bounds(received_at)`, is refused: ahead
        of the receive time by more than the clock skew allowed, or older than the age
        allowed."""
        if occurred > received_at:
            return InvalidInput(
                f"{field} {occurred.isoformat()} is in the future "
                f"(more than {int(self.max_clock_skew.total_seconds())} s ahead)",
                field=field,
            )
        return InvalidInput(
            f"{field} {occurred.isoformat()} is older than {self.max_age.days} days",
            field=field,
        )


def kept_until(month: date, retention_months: int, max_age: timedelta) -> datetime:
    """Until when the events of `month` are kept (BILLING_EVENT_RETENTION_MONTHS =
    `retention_months`): to the end of the `retention_months`-th month after it, and at
    least until none of its events can still be received (`max_age` past its end,
    BILLING_MAX_EVENT_AGE_DAYS), so that no line lands in a month once forgotten."""
    first = BillingPeriod.starting(month)
    last = first
    for _ in range(retention_months):
        last = last.next()
    return max(last.end, first.end + max_age)


@dataclass(slots=True)
class Line:
    """What an event counts toward: `quantity` units of `metric`."""

    metric: str
    quantity: int
    value: str | None = None
    """For a unique count: the value it counts. Its quantity is then 1 if the value is new
    in the period, else 0, which only the database can tell (`UsageRepository`)."""
    aggregation: Aggregation = Aggregation.SUM
    """How its metric aggregates: a max's or a latest's quantity is not added to the
    period's usage (see `counter_peaks`, `counter_lasts`)."""

    @property
    def adds(self) -> bool:
        """Whether its quantity adds to its period's usage (all but a max's or a latest's)."""
        return self.aggregation not in TAKEN_NOT_ADDED


@dataclass(slots=True)
class UsageEvent:
    """One validated event. `(org_id, idempotency_key)` identifies it; its `lines` are what
    it counts toward."""

    org_id: str
    name: str
    """The event's name; for a report of one metric's quantity, the metric's key."""
    quantity: int | None
    """A report of one metric: its quantity. A named event: None (its lines come from its
    properties)."""
    idempotency_key: str
    occurred_at: datetime
    received_at: datetime
    occurred_at_given: bool = True
    """Whether the sender said when it happened (`occurred_at`), not the kernel (the receive
    time) nor the sender's `observed_at`."""
    properties: str | None = None
    """Canonical JSON text (`canonical_properties`), or None."""
    lines: tuple[Line, ...] = ()
    skipped: tuple[str, ...] = ()
    """The meters its name and filters matched that could not read their property from it,
    so did not count it (`metrics.rules.Reading.skipped`)."""

    @property
    def period(self) -> BillingPeriod:
        """The event time, not the receive time, decides the period."""
        return BillingPeriod.containing(self.occurred_at)

    @property
    def counted(self) -> bool:
        """Whether some metric counts it: a report of a metric's quantity, or a named event
        with a line. One without (a protocol's event no metric counts) is kept all the same,
        and read back as counted toward nothing."""
        return self.quantity is not None or bool(self.lines)

    @property
    def period_start(self) -> date:
        """`period.key`, cheaply: `occurred_at` is already UTC (this is on the ingest path)."""
        return date(self.occurred_at.year, self.occurred_at.month, 1)

    def is_replay_of(self, stored: UsageEvent) -> bool:
        """Whether `self` repeats `stored`: same name, quantity and properties, and the same
        event time when both senders gave one (a time the kernel chose, for either, is not
        part of the payload: a repeat sent with a time of its own of a consume's event is the
        same usage; nor is an `observed_at`). What it counts toward follows from these, so it
        is not compared.
        Ingestion applies this rule in SQL, nothing stored being read back: on PostgreSQL in
        the insert that skipped the key (`UsageRepository.write_events`), else in
        `UsageRepository.conflicts`; tests/usage/test_service.py holds both to the same
        answers as this."""
        return (
            self.name == stored.name
            and self.quantity == stored.quantity
            and self.properties == stored.properties
            and (
                not (self.occurred_at_given and stored.occurred_at_given)
                or self.occurred_at == stored.occurred_at
            )
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
    properties: object = None,
    event: object = None,
    observed_at: datetime | None = None,
) -> UsageEvent:
    """Validate raw event fields; raises InvalidInput (or UnknownMetric, UnknownEvent) naming
    the bad field. A named `event` counts toward each metric that counts it (see
    `counting_meters`); otherwise `quantity` counts toward `metric`. (`Intake.judge` for
    one event.)"""
    return Intake(received_at, catalogue, window).judge(
        org_id=org_id,
        metric=metric,
        quantity=quantity,
        idempotency_key=idempotency_key,
        occurred_at=occurred_at,
        properties=properties,
        event=event,
        observed_at=observed_at,
    )


class Intake:
    """Events received at one moment, judged one by one (`judge`) by the rules of
    `new_usage_event`. What they share is worked out once: the receive time in UTC, the
    bounds of the event time window around it, and, as they turn up, the org ids found
    valid, the metrics found recordable and the meters listening to each event name. A
    batch is judged by one Intake."""

    __slots__ = (
        "_catalogue",
        "_earliest",
        "_keep_uncounted",
        "_latest",
        "_listening",
        "_orgs",
        "_reported",
        "_window",
        "received_at",
    )

    def __init__(
        self,
        received_at: datetime,
        catalogue: Mapping[str, Metric],
        window: EventTimeWindow,
        *,
        keep_uncounted: bool = False,
    ) -> None:
        self.received_at = ensure_utc(received_at)
        self._keep_uncounted = keep_uncounted
        self._catalogue = catalogue
        self._window = window
        self._earliest, self._latest = window.bounds(self.received_at)
        self._orgs: set[str] = set()
        self._reported: dict[str, Metric] = {}  # metrics found recordable
        self._listening: dict[str, list[Metric]] = {}

    def judge(
        self,
        *,
        org_id: object,
        metric: object,
        quantity: object,
        idempotency_key: object,
        occurred_at: datetime | None,
        properties: object = None,
        event: object = None,
        observed_at: datetime | None = None,
    ) -> UsageEvent:
        """One event sent with these fields, validated (see `new_usage_event`)."""
        if type(org_id) is str and org_id in self._orgs:
            org = org_id  # equal to an id found valid: valid
        else:
            org = validate_id(org_id, "org_id")
            self._orgs.add(org)
        amount: int | None = None
        report: Line | None = None  # the one line of a report of a quantity
        if event is None:
            if metric is None:
                raise InvalidInput(
                    "an event needs `metric` and `quantity`, or an `event` name", field="metric"
                )
            reported = self._recordable(metric)
            name = reported.key
            amount = validate_quantity(quantity)
            report = Line(name, amount, None, reported.aggregation)
        elif metric is not None or quantity is not None:
            raise InvalidInput(
                "an event has either an `event` name (its metrics read its properties) or "
                "`metric` and `quantity`, not both",
                field="event",
            )
        else:
            name = validate_event_name(event)
        key = validate_id(idempotency_key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
        if occurred_at is not None:
            if observed_at is not None:
                raise InvalidInput(
                    "an event has `occurred_at` (when it happened) or `observed_at` (when it "
                    "was seen, not compared on a repeat), not both",
                    field="observed_at",
                )
            occurred = self._event_time(occurred_at, "occurred_at")
        elif observed_at is not None:
            occurred = self._event_time(observed_at, "observed_at")
        else:
            occurred = self.received_at
        text = canonical_properties(properties)
        lines: tuple[Line, ...]
        skipped: tuple[str, ...] = ()
        if report is not None:
            lines = (report,)
        else:
            sent = properties if isinstance(properties, Mapping) else {}
            counted, skipped = read_event(self._meters_listening_to(name), sent)
            lines = tuple(
                Line(m.key, units, m.unique_value(sent), m.aggregation) for m, units in counted
            )
        return UsageEvent(
            org_id=org,
            name=name,
            quantity=amount,
            idempotency_key=key,
            occurred_at=occurred,
            received_at=self.received_at,
            occurred_at_given=occurred_at is not None,
            properties=text,
            lines=lines,
            skipped=skipped,
        )

    def _recordable(self, metric: object) -> Metric:
        """The metric a quantity is reported of, if recordable (`validate_metric`)."""
        found = self._reported.get(metric) if type(metric) is str else None
        if found is None:
            found = validate_metric(metric, self._catalogue)
            self._reported[found.key] = found
        return found

    def _event_time(self, sent: datetime, field: str) -> datetime:
        """`sent` (the field `field`) in UTC if it is a usable time inside the window, else
        InvalidInput."""
        occurred = validate_occurred_at(sent, field)
        if not self._earliest <= occurred <= self._latest:
            raise self._window.refusal(occurred, self.received_at, field)
        return occurred

    def _meters_listening_to(self, name: str) -> list[Metric]:
        """The metrics that count events named `name`, in key order (`counting_meters`);
        with `keep_uncounted`, none for a name no metric counts (the event is kept, counted
        by nothing, as the incumbents' protocols keep it), else UnknownEvent."""
        if name not in self._listening:
            try:
                self._listening[name] = listening_meters(name, self._catalogue)
            except UnknownEvent:
                if not self._keep_uncounted:
                    raise
                self._listening[name] = []
        return self._listening[name]


LineKey = tuple[str, str, str]
"""(org_id, idempotency_key, metric): one line of usage_lines."""


def counter_increments(
    events: Iterable[UsageEvent], unique: Mapping[LineKey, int] | None = None
) -> dict[CounterKey, int]:
    """The amount to add to each counter for `events`, in a stable (deadlock-free) order;
    a unique count's line adds what `unique` says it came to (1 for a new value, else 0).
    A max's or a latest's lines add nothing: see `counter_peaks`, `counter_lasts`."""
    totals: dict[CounterKey, int] = {}
    for event in events:
        for line in event.lines:
            if not line.adds:
                continue
            key = CounterKey(event.org_id, event.period_start, line.metric)
            quantity = line.quantity
            if line.value is not None:
                quantity = (unique or {})[event.org_id, event.idempotency_key, line.metric]
            totals[key] = totals.get(key, 0) + quantity
    return dict(sorted(totals.items()))


def skip_counts(events: Iterable[UsageEvent]) -> dict[CounterKey, int]:
    """How many of `events` each meter skipped (could not read its property from), per org
    and month, in a stable (deadlock-free) order."""
    totals: dict[CounterKey, int] = {}
    for event in events:
        for metric in event.skipped:
            key = CounterKey(event.org_id, event.period_start, metric)
            totals[key] = totals.get(key, 0) + 1
    return dict(sorted(totals.items()))


def counter_peaks(events: Iterable[UsageEvent]) -> dict[CounterKey, int]:
    """The amount each max's counter rises to (if higher) for `events`: the highest of
    their lines, in a stable (deadlock-free) order."""
    peaks: dict[CounterKey, int] = {}
    for event in events:
        for line in event.lines:
            if line.aggregation is Aggregation.MAX:
                key = CounterKey(event.org_id, event.period_start, line.metric)
                peaks[key] = max(peaks.get(key, 0), line.quantity)
    return dict(sorted(peaks.items()))


def counter_lasts(events: Iterable[UsageEvent]) -> dict[CounterKey, tuple[Position, int]]:
    """For each latest's counter, the last of `events`' lines (where it stands, and its
    quantity), which the counter takes if it stands after the counter's own last; in a
    stable (deadlock-free) order."""
    lasts: dict[CounterKey, tuple[Position, int]] = {}
    for event in events:
        for line in event.lines:
            if line.aggregation is Aggregation.LATEST:
                key = CounterKey(event.org_id, event.period_start, line.metric)
                at = Position(event.occurred_at, event.idempotency_key)
                if key not in lasts or at > lasts[key][0]:
                    lasts[key] = (at, line.quantity)
    return dict(sorted(lasts.items()))


EventPosition = tuple[datetime, str, str]
"""Where a line stands in an org's events: (occurred_at, idempotency_key, metric)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A usage event as the kernel keeps it, read back: one of its lines (an event that
    counts toward several metrics is read back once per metric)."""

    idempotency_key: str
    metric: str | None
    """The metric this line counts toward; None: no metric counts the event (a protocol's
    event of a name no metric counts, or one no metric's filters admit), kept all the same."""
    quantity: int
    occurred_at: datetime
    received_at: datetime
    invoice_id: str | None
    """The invoice that billed it (None: not billed yet)."""
    properties: str | None = None
    """As sent, in canonical JSON text; None for none."""
    event: str | None = None
    """The event's name; None: the metric's key (it reported a quantity of that metric)."""
    changed_repeats: int = 0
    """How often its key was sent again with another payload and answered as a duplicate
    (an incumbent's protocol that counts it so); the first payload is what counts."""
    last_changed_repeat_at: datetime | None = None

    @property
    def position(self) -> EventPosition:
        """Where it stands in an org's events: by time, then by key, then by metric (an
        event no metric counts: "", first)."""
        return self.occurred_at, self.idempotency_key, self.metric or ""


@dataclass(frozen=True, slots=True)
class Counter:
    """A usage counter: the period's usage, and the units open reservations hold in it;
    from a write, also what its usage is judged against for alerts."""

    used: int
    held: int
    terms: AlertTerms | None = None
    moved: Moved | None = None
    """From a write that read them: its alert terms and its charge."""


@dataclass(frozen=True, slots=True)
class CeilingWrite:
    """What a write under a ceiling did: whether it added its units (as usage, or as a
    hold), and the counter as the write judged it, before its own units: the usage, and
    the units held by reservations (when it added nothing: what left no room)."""

    recorded: bool
    used: int
    held: int


@dataclass(frozen=True, slots=True)
class UsageRecordResult:
    status: RecordStatus
    event: UsageEvent
    created_org: bool = False
    """The org did not exist and was created for this event (auto-creation)."""


@dataclass(slots=True)
class UsageOutcome:
    status: RecordStatus
    event: UsageEvent | None
    error: BillingError | None = None
    created_org: bool = False
    """This event's org did not exist and was created for it (auto-creation)."""


@dataclass(frozen=True, slots=True)
class UsageBatchResult:
    outcomes: tuple[UsageOutcome, ...]
    """One per event sent, in the order sent."""
    totals: Mapping[CounterKey, int] = field(default_factory=dict)
    """The new total of each counter the batch added to, as its transaction left it."""

    def count(self, status: RecordStatus) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)
