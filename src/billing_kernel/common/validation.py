"""What an id, a piece of text, a quantity or an event time may be, wherever it comes from
(an event, an org, a user, a token's subject). Each check returns the value or raises
InvalidInput naming the field.

The rules for an event's fields are the usage-tracking SDK's (`billing_kernel_sdk.fields`):
the SDK checks them before it queues an event, the kernel when the event arrives, and both
read the one definition.
"""

from __future__ import annotations

import re
from datetime import datetime

from billing_kernel.errors import InvalidInput
from billing_kernel_sdk import fields
from billing_kernel_sdk.fields import (
    ID_PATTERN_TEXT,
    MAX_EVENT_QUANTITY,
    MAX_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_PROPERTIES,
    MAX_PROPERTIES_LENGTH,
)

__all__ = [
    "ID_PATTERN_TEXT",
    "MAX_EVENT_QUANTITY",
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_PROPERTIES",
    "MAX_PROPERTIES_LENGTH",
    "PROPERTY_NAME_PATTERN",
    "canonical_properties",
    "validate_id",
    "validate_occurred_at",
    "validate_property_name",
    "validate_quantity",
    "validate_text",
]


PROPERTY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
"""An event property usage is split or priced by: 1-64 letters, digits, `_`, `.`, `:`, `-`."""


def validate_property_name(prop: object, field: str) -> str:
    """`prop` if it is a property name usage may be split by, else InvalidInput naming
    `field`."""
    if not isinstance(prop, str) or not PROPERTY_NAME_PATTERN.fullmatch(prop):
        raise InvalidInput(
            f"{field} must be a property name of 1-64 letters, digits, _ . : or -", field=field
        )
    return prop


def validate_id(value: object, what: str, max_length: int = MAX_ID_LENGTH) -> str:
    """A non-empty printable string of at most `max_length` characters, or InvalidInput."""
    try:
        return fields.check_id(value, what, max_length)
    except fields.FieldError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None


def validate_quantity(value: object) -> int:
    """A whole number of units from 0 to MAX_EVENT_QUANTITY, or InvalidInput."""
    try:
        return fields.check_quantity(value)
    except fields.FieldError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None


def validate_occurred_at(value: object, field: str) -> datetime:
    """An event time as a UTC datetime (see `fields.check_occurred_at`), or InvalidInput."""
    try:
        return fields.check_occurred_at(value, field)
    except fields.FieldError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None


def validate_text(value: str | None, what: str, max_length: int) -> str | None:
    """Optional free text (a name, an email): at most `max_length` characters, no control
    characters (PostgreSQL cannot even store a NUL)."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidInput(f"{what} must be text of at most {max_length} characters", field=what)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"{what} contains control characters", field=what)
    try:
        return fields.check_storable(value, what)
    except fields.FieldError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None


def canonical_properties(properties: object) -> str | None:
    """An event's properties as one canonical JSON text (see
    `fields.canonical_properties`), None for none; InvalidInput otherwise."""
    try:
        return fields.canonical_properties(properties)
    except fields.FieldError as exc:
        raise InvalidInput(str(exc), field=exc.field) from None
