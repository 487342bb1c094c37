"""How another system's usage event becomes the kernel's: the customer id names an org (by
alias, else as the org id) and the event is a named event with its properties, which the
kernel's metrics count as they count native ones (by default a metric counts events named
by its key, reading the property `value`, else `quantity`). Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from billing_kernel.common.periods import representable
from billing_kernel.common.validation import validate_id
from billing_kernel.errors import BillingError, InvalidInput

_UNIX = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,9})?$")
_RFC_3339 = re.compile(
    r"^([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.([0-9]{1,9}))?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


@dataclass(frozen=True, slots=True)
class ForeignEvent:
    """One event as a protocol sent it, named in the kernel's terms, before validation."""

    customer: object
    """The protocol's customer or subject id: an org alias, else the org id."""
    name: object
    """The event name: the key of the metric it counts toward."""
    properties: Mapping[str, object]
    key: object
    """The protocol's idempotency field: the event counts once per key and org."""
    occurred_at: datetime | None
    properties_field: str = "properties"
    """What the protocol calls the properties (OpenMeter `data`, Stripe `payload`), for the
    errors that name one of them."""
    known_only: str | None = None
    """The field naming the customer, when the protocol takes only a customer it knows
    (Polar's own `customer_id`): an unknown one is refused ("Customer not found") rather
    than making an org."""


class RefusedBatch(Exception):
    """Some events of a protocol batch were refused, so none was recorded: the first error
    of each refused event, by its position in the batch."""

    def __init__(self, errors: Sequence[tuple[int, BillingError]]) -> None:
        self.errors = tuple(errors)
        index, first = self.errors[0]
        super().__init__(f"event {index}: {first.message}")

    @property
    def first(self) -> BillingError:
        return self.errors[0][1]


def parse_all(
    raws: Sequence[object], parse: Callable[[object], ForeignEvent]
) -> list[ForeignEvent | BillingError]:
    """Every event of a batch parsed by `parse`, or the error that refuses it."""
    parsed: list[ForeignEvent | BillingError] = []
    for raw in raws:
        try:
            parsed.append(parse(raw))
        except InvalidInput as exc:
            parsed.append(exc)
    return parsed


def in_protocol_terms(error: BillingError, event: ForeignEvent) -> BillingError:
    """`error` naming the event's properties as its protocol does: the kernel's meters call
    them `properties` (`properties.value must be a whole number`), OpenMeter `data`."""
    field = error.details.get("field")
    prefix = "properties."
    if not isinstance(field, str) or not field.startswith(prefix):
        return error
    named = f"{event.properties_field}."
    message = error.message.replace(prefix, named, 1)
    return InvalidInput(message, field=named + field.removeprefix(prefix))


def event_time(value: object, field: str) -> datetime | None:
    """A protocol's event time: absent (None: when received), Unix seconds (a number or a
    string of digits, with a fraction), or RFC 3339 text with a zone."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a time, got {value!r}", field=field)
    if isinstance(value, int | float) or (isinstance(value, str) and _UNIX.fullmatch(value)):
        try:
            seconds = Decimal(str(value))
            whole = int(seconds)
            micros = int((seconds - whole) * 1_000_000)
            return representable(datetime.fromtimestamp(whole, UTC).replace(microsecond=micros))
        except (InvalidOperation, OverflowError, OSError, ValueError):
            raise InvalidInput(f"{field} is not a usable Unix time", field=field) from None
    found = _RFC_3339.fullmatch(value) if isinstance(value, str) else None
    if found is not None:
        day, clock, fraction, zone = found.groups()
        moment = f"{day}T{clock}.{fraction or 0}{zone.upper()}"  # digits past µs are cut
        try:
            parsed = datetime.fromisoformat(moment)
        except ValueError:  # a day or an hour that does not exist
            parsed = None
        if parsed is not None:
            try:
                return representable(parsed)
            except ValueError as exc:
                raise InvalidInput(f"{field} {exc}", field=field) from None
    raise InvalidInput(
        f"{field} must be Unix seconds or an RFC 3339 time with a zone, got {value!r:.40}",
        field=field,
    )


def text_field(value: object, field: str) -> str:
    """A required text field's value, or InvalidInput naming it."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} is required (a non-empty string)", field=field)
    return value


def customer_field(value: object, field: str) -> str:
    """A customer or subject id (an org's id or alias: an id's rules), or InvalidInput
    naming the protocol's field."""
    if value is None or value == "":
        raise InvalidInput(f"{field} is required (a non-empty string)", field=field)
    return validate_id(value, field)


def object_field(value: object, field: str) -> Mapping[str, object]:
    """An optional JSON object field's value ({} when absent), or InvalidInput naming it."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidInput(f"{field} must be an object", field=field)
    return value


def batch_of(body: object, field: str = "events", most: int = 1000) -> list[object]:
    """The list of events a batch body holds under `field` (1 to `most` of them), or
    InvalidInput."""
    raws = body.get(field) if isinstance(body, Mapping) else None
    if not isinstance(raws, list) or not 1 <= len(raws) <= most:
        raise InvalidInput(f"{field} must be a list of 1 to {most} events", field=field)
    return raws
