"""Features a plan grants, and an org's entitlements. Pure.

A feature is a key (as a metric's: `sso`, `max_projects`) with a value: `true`/`false` (a
switch), a whole number (`max_projects: 5`) or a short text (`support: "priority"`). A plan
grants the features it names; a feature it does not name is not granted (`has_feature` is
false, `feature_value` is None). An org's own value of a feature replaces its plan's, as an
org's own limit does, until it is cleared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from billing_kernel.common.validation import validate_id
from billing_kernel.errors import InvalidInput

FeatureValue = bool | int | str
"""A feature's value: a switch, a whole number or a short text."""

FEATURE_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_FEATURES = 50
"""The most features a plan grants."""
MAX_TEXT = 200
"""The longest a text value may be, in characters."""
MAX_NUMBER = 10**15
"""The largest a number value may be either way."""


def check_value(value: object, field: str) -> FeatureValue:
    """`value` as a feature's value; InvalidInput naming `field` unless it is a boolean, a
    whole number within MAX_NUMBER either way, or a text of 1 to MAX_TEXT characters as an id
    may be (no control characters, no spaces at either end: `common.validation`)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -MAX_NUMBER <= value <= MAX_NUMBER:
            return value
        raise InvalidInput(
            f"{field} must be a whole number from -{MAX_NUMBER:,} to {MAX_NUMBER:,}", field=field
        )
    if isinstance(value, str):
        try:
            return validate_id(value, field, MAX_TEXT)
        except InvalidInput:
            raise InvalidInput(
                f"{field} must be a text of 1 to {MAX_TEXT} characters, without control "
                "characters or spaces at either end",
                field=field,
            ) from None
    raise InvalidInput(f"{field} must be true or false, a whole number, or a text", field=field)


def check_key(key: str, field: str = "feature") -> str:
    """A feature's key: a lowercase letter, then up to 63 lowercase letters, digits or
    underscores; InvalidInput naming `field` otherwise."""
    if not FEATURE_KEY_PATTERN.fullmatch(key):
        shown = key if len(key) <= 64 else f"{key[:64]}..."
        raise InvalidInput(
            f"{field} {shown!r} must be a lowercase letter followed by up to 63 lowercase "
            "letters, digits or underscores",
            field=field,
        )
    return key


def validate_features(features: Mapping[str, object]) -> dict[str, FeatureValue]:
    """A plan's features, checked whole: at most MAX_FEATURES, each key and value valid
    (`check_key`, `check_value`, the field named `features.<key>`)."""
    if len(features) > MAX_FEATURES:
        raise InvalidInput(f"a plan grants at most {MAX_FEATURES} features", field="features")
    return {
        check_key(key, "features"): check_value(value, f"features.{key}")
        for key, value in features.items()
    }


def entitlements(
    granted: Mapping[str, FeatureValue], own: Mapping[str, FeatureValue]
) -> dict[str, FeatureValue]:
    """An org's features: its plan's `granted`, each replaced by the org's `own` value where
    it has one (an own value of a feature its plan does not grant adds it), in key order."""
    return dict(sorted({**granted, **own}.items()))


def value_text(value: FeatureValue) -> str:
    """A value as stored: its JSON."""
    return json.dumps(value)


def value_of(text: str) -> FeatureValue:
    """A value `value_text` stored."""
    value: FeatureValue = json.loads(text)
    return value


def describe(value: FeatureValue) -> str:
    """A value in a word for a person: "yes", "no", "5", "priority"."""
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return f"{value:,}" if isinstance(value, int) else value
