"""What each field of a usage event may hold: the one definition, used by `track()` before an
event is queued and by the kernel when it judges what arrives (so the SDK never queues an
event the kernel would refuse for its form). Standard library only."""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

__all__ = [
    "EVENT_NAME_PATTERN",
    "EVENT_NAME_PATTERN_TEXT",
    "ID_PATTERN",
    "ID_PATTERN_TEXT",
    "MAX_EVENT_NAME_LENGTH",
    "MAX_EVENT_QUANTITY",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PROPERTIES",
    "MAX_PROPERTIES_LENGTH",
    "MAX_PROPERTY_NAMES_KEPT",
    "FieldError",
    "canonical_properties",
    "check_event_name",
    "check_id",
    "check_occurred_at",
    "check_quantity",
    "check_storable",
    "ensure_utc",
]
"""Public on purpose: the one definition of an event's fields, which the kernel applies too."""

MAX_EVENT_QUANTITY = 10**12
"""The largest quantity one event may carry; anything above is taken for a bug upstream."""
MAX_ID_LENGTH = 64
"""Org and user ids are the product's own, up to this many characters."""
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_EVENT_NAME_LENGTH = 255
"""A named event's name (the kernel also checks its characters: letters, digits, . _ : / -)."""
MAX_PROPERTIES = 50
MAX_PROPERTIES_LENGTH = 4096
ID_PATTERN_TEXT = (
    r"^[^\s\ufeff\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]*[^\s\ufeff\x00-\x1f\x7f-\x9f])?$"
)
"""What an id or key may be: no control characters, no leading or trailing white space (a
byte-order mark counted as one: JSON Schema's ECMA regexes do, Python's do not)."""
ID_PATTERN = re.compile(ID_PATTERN_TEXT)


class FieldError(ValueError):
    """A field's value is not one an event may carry; `field` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def check_id(value: object, what: str, max_length: int = MAX_ID_LENGTH) -> str:
    """A non-empty printable string of at most `max_length` characters, or FieldError."""
    if (  # the common case, on the ingest path: one pattern match (it admits no spaces at
        # either end, no control characters, nothing empty) and one C-level scan
        type(value) is str
        and len(value) <= max_length
        and ID_PATTERN.fullmatch(value)
        and value.isascii()
    ):
        return value
    if not isinstance(value, str):
        raise FieldError(f"{what} must be a string", what)
    if not value or value.strip() != value:
        raise FieldError(f"{what} must be non-empty, without leading or trailing spaces", what)
    if len(value) > max_length:
        raise FieldError(f"{what} is longer than {max_length} characters", what)
    if not ID_PATTERN.fullmatch(value):
        raise FieldError(f"{what} contains control characters", what)
    return check_storable(value, what)


EVENT_NAME_PATTERN_TEXT = r"^[^\x00-\x1f\x7f-\x9f]{1,255}$"
"""What an event's name may be: any text of 1 to 255 characters without control characters,
kept as sent (`llm.completion`, `llm call`, `トークン`): what the incumbents' protocols take."""
EVENT_NAME_PATTERN = re.compile(EVENT_NAME_PATTERN_TEXT)


def check_event_name(value: object, what: str = "event") -> str:
    """An event's name (EVENT_NAME_PATTERN, Unicode text a database can store), or
    FieldError."""
    if type(value) is str and EVENT_NAME_PATTERN.fullmatch(value):
        return check_storable(value, what)
    if not isinstance(value, str):
        raise FieldError(f"{what} must be a string", what)
    if not value:
        raise FieldError(f"{what} must not be empty", what)
    if len(value) > MAX_EVENT_NAME_LENGTH:
        raise FieldError(f"{what} is longer than {MAX_EVENT_NAME_LENGTH} characters", what)
    raise FieldError(f"{what} contains control characters", what)


def check_storable(value: str, what: str) -> str:
    """`value` if it is Unicode text a database can store. JSON can carry a lone UTF-16
    surrogate (`"\\ud800"`), which no UTF-8 column (PostgreSQL's or SQLite's) can hold."""
    if not value.isascii():  # the common case costs one C-level scan
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise FieldError(
                f"{what} contains a lone UTF-16 surrogate, which is not Unicode text", what
            ) from None
    return value


def check_quantity(value: object) -> int:
    """A whole number of units from 0 to MAX_EVENT_QUANTITY, or FieldError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError("quantity must be a whole number", "quantity")
    if value < 0:
        raise FieldError("quantity must not be negative", "quantity")
    if value > MAX_EVENT_QUANTITY:
        raise FieldError(
            f"quantity {value} is above the per-event maximum of {MAX_EVENT_QUANTITY}",
            "quantity",
        )
    return value


def ensure_utc(moment: datetime) -> datetime:
    """Return `moment` in UTC. ValueError for a naive datetime (refused, never guessed) and
    for one whose UTC instant is outside the calendar (`0001-01-01T00:00:00+01:00`)."""
    if moment.tzinfo is UTC:  # the common case, on the ingest path: nothing to convert
        return moment
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment.isoformat()} has no timezone; UTC is required")
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            f"datetime {moment.isoformat()} is outside the years 1 to 9999 in UTC"
        ) from None


def check_occurred_at(value: object, field: str = "occurred_at") -> datetime:
    """An event time (sent as `field`) as a UTC datetime: it must be a datetime with a
    timezone whose UTC instant is inside the calendar (an offset can push year 1 or 9999
    out of it)."""
    if not isinstance(value, datetime):
        raise FieldError(f"{field} must be a datetime with a timezone", field)
    try:
        return ensure_utc(value)
    except ValueError as exc:
        raise FieldError(f"{field} is not usable: {exc}", field) from None


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
"""How properties are written as text (one encoder, built once: on the ingest path)."""


def _one_shot_encoder() -> Callable[[object], str]:
    """`_CANONICAL.encode` for a JSON object, without what it sets up anew on every call
    (its C encoder and a dict of the containers being encoded, against cycles): the C
    encoder with the same settings, made once. A cycle then ends in RecursionError. Where
    the C encoder is missing, `_CANONICAL.encode` itself."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover
        return _CANONICAL.encode
    encode = make(
        None,  # no cycle check (markers)
        _CANONICAL.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # no indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        False,  # allow_nan
    )
    return lambda value: "".join(encode(value, 0))


_encode = _one_shot_encoder()

_PROPERTY_NAMES: set[object] = set()
"""Property names found valid so far (events of one product carry the same few): each is
then checked once, not once per event."""
MAX_PROPERTY_NAMES_KEPT = 4096


def canonical_properties(properties: object) -> str | None:
    """An event's properties (a JSON object of at most MAX_PROPERTIES keys, each an id of
    at most 64 characters, with finite numbers) as one canonical JSON text: keys sorted, no
    spaces, at most MAX_PROPERTIES_LENGTH characters; so that two events carry the same
    properties exactly when their texts are equal. None for none. FieldError otherwise."""
    if properties is None:
        return None
    if not isinstance(properties, Mapping):
        raise FieldError("properties must be a JSON object", "properties")
    if len(properties) > MAX_PROPERTIES:
        raise FieldError(
            f"properties has {len(properties)} keys; at most {MAX_PROPERTIES}", "properties"
        )
    for name in properties:
        if name not in _PROPERTY_NAMES:
            check_id(name, "a property name")
            if len(_PROPERTY_NAMES) < MAX_PROPERTY_NAMES_KEPT:
                _PROPERTY_NAMES.add(name)
    try:
        text = _encode(properties)
        if not text.isascii():
            text.encode()
    except (TypeError, ValueError, RecursionError):  # a lone surrogate: UnicodeEncodeError
        raise FieldError(
            "properties must hold only JSON values: finite numbers, Unicode text", "properties"
        ) from None
    if len(text) > MAX_PROPERTIES_LENGTH:
        raise FieldError(
            f"properties are longer than {MAX_PROPERTIES_LENGTH} characters as JSON", "properties"
        )
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise FieldError(
            "properties must not hold a NUL character (\\u0000): no database stores one",
            "properties",
        )
    return text


_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
"""A NUL as canonical JSON writes it: `\\u0000` after an even number of backslashes (an odd
one makes it a backslash followed by the text `u0000`)."""
