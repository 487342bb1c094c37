"""What an id, a piece of text, a quantity or an event time may be, wherever it comes from
(an event, an org, a user, a token's subject). Each check returns the value or raises
InvalidInput naming the field."""

from __future__ import annotations

import re
from datetime import datetime

from billing_kernel.common.periods import ensure_utc
from billing_kernel.errors import InvalidInput

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
