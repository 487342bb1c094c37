"""What request and response bodies share: money as a decimal string (`"49.00"`, never a
JSON number), whole numbers that are not coerced, ids and free text."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from billing_kernel.common.money import money_text
from billing_kernel.common.validation import ID_PATTERN_TEXT

MoneyText = Annotated[
    Decimal,
    PlainSerializer(money_text, return_type=str),
    Field(description='A decimal amount as a string, e.g. "49.00".'),
]


YEAR_PATTERN = r"([1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
"""A year from 1000 to 9998: what a caller's time or month may be in (so that it, its month
and the month after exist in UTC whatever its offset)."""
TIME_PATTERN = rf"^{YEAR_PATTERN}-"
"""What a caller's RFC 3339 time starts with (the OpenAPI schema states it)."""
_TIME_START = re.compile(TIME_PATTERN)
_TIME_RULE = "must be an RFC 3339 date-time with a time zone, in the years 1000 to 9998"


def _caller_time(value: object) -> object:
    """A caller's time is RFC 3339 text in the years 1000 to 9998: a number (or a string of
    digits) is not taken for a Unix time."""
    if not isinstance(value, str) or not _TIME_START.match(value):
        raise ValueError(_TIME_RULE)
    return value


def _string(value: object) -> object:
    """An event's time is RFC 3339 text: a number is not taken for a Unix time."""
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 date-time string with a time zone")
    return value


EventTimeText = Annotated[AwareDatetime, BeforeValidator(_string)]
"""An event's time: RFC 3339 text with a time zone, any year. Not refused as the batch is
parsed: the usage rules judge each event's time alone (the window of times taken)."""

DateTimeText = Annotated[
    AwareDatetime,
    BeforeValidator(_caller_time),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIME_PATTERN}),
]
"""An RFC 3339 date-time with a time zone, in the years 1000 to 9998: in a body or a query
string alike."""

QueryDateTime = DateTimeText
"""The same, named where a query takes it."""


def _whole_number(value: object) -> object:
    """A JSON integer, or a number with no fraction (JSON Schema's `integer` admits 2.0).
    Strings, booleans and fractions are refused rather than coerced."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


WHOLE = BeforeValidator(_whole_number)
WholeNumber = Annotated[int, WHOLE]
"""For bounds that show in the OpenAPI schema even when the field is optional (`... | None`),
put them before the validator: `Annotated[int, Field(ge=1), WHOLE]`."""


Slug = Annotated[str, Field(max_length=64, pattern=ID_PATTERN_TEXT)]
"""An identifier: no control characters, no leading or trailing white space."""


Text = Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]
"""Free text without control characters."""


MONTH_PATTERN = rf"^{YEAR_PATTERN}-(0[1-9]|1[0-2])$"
"""A calendar month, `YYYY-MM` (a billing period), from 1000-01 to 9998-12."""


class StrictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FromDomain(BaseModel):
    """A response body read straight off a domain object's attributes of the same names."""

    model_config = ConfigDict(from_attributes=True)
