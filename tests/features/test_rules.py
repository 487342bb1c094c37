"""Features a plan grants and an org's entitlements (features.rules)."""

import pytest

from billing_kernel.errors import InvalidInput
from billing_kernel.features.rules import (
    MAX_FEATURES,
    MAX_NUMBER,
    MAX_TEXT,
    check_key,
    check_value,
    describe,
    entitlements,
    validate_features,
    value_of,
    value_text,
)


def test_a_value_is_a_switch_a_whole_number_or_a_short_text() -> None:
    for value in (True, False, 0, 5, -MAX_NUMBER, MAX_NUMBER, "priority", "x", "x" * MAX_TEXT):
        assert check_value(value, "value") == value
        assert type(check_value(value, "value")) is type(value)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (MAX_NUMBER + 1, "a whole number from -1,000,000,000,000,000 to 1,000,000,000,000,000"),
        (-MAX_NUMBER - 1, "a whole number from"),
        ("", "a text of 1 to 200 characters, without control characters"),
        ("x" * (MAX_TEXT + 1), "a text of 1 to 200"),
        ("line\nbreak", "without control characters"),
        (" padded", "or spaces at either end"),
        (1.5, "must be true or false, a whole number, or a text"),
        (None, "must be true or false"),
        ([True], "must be true or false"),
    ],
)
def test_any_other_value_is_refused_naming_the_field(value: object, words: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_value(value, "features.sso")
    assert refused.value.details["field"] == "features.sso"
    assert str(refused.value).startswith("features.sso must be")
    assert words in str(refused.value)


def test_a_key_is_written_as_a_metrics_is() -> None:
    assert check_key("max_projects") == "max_projects"
    assert check_key("a" * 64) == "a" * 64
    for wrong in ("", "Sso", "1sso", "a" * 65, "s-o", "sso "):
        with pytest.raises(InvalidInput) as refused:
            check_key(wrong, "features")
        assert refused.value.details["field"] == "features"
        assert "lowercase letter followed by up to 63" in str(refused.value)
    with pytest.raises(InvalidInput) as refused:
        check_key("x" * 10_000)
    assert str(refused.value).startswith(f"feature '{'x' * 64}...' must be")
    for shown in ("Sso", "X" * 64):  # shown whole up to 64 characters
        with pytest.raises(InvalidInput) as refused:
            check_key(shown)
        assert str(refused.value) == (
            f"feature '{shown}' must be a lowercase letter followed by up to 63 lowercase "
            "letters, digits or underscores"
        )
    with pytest.raises(InvalidInput) as refused:
        check_key("X" * 65)
    assert f"'{'X' * 64}...'" in str(refused.value)


def test_a_plans_features_are_checked_whole() -> None:
    granted = {"sso": True, "max_projects": 5, "support": "priority"}
    assert validate_features(granted) == granted
    assert validate_features({f"f{n}": True for n in range(MAX_FEATURES)})
    with pytest.raises(InvalidInput, match="at most 50 features") as refused:
        validate_features({f"f{n}": True for n in range(MAX_FEATURES + 1)})
    assert refused.value.details == {"field": "features"}
    with pytest.raises(InvalidInput) as refused:
        validate_features({"sso": True, "seats": 2.5})
    assert refused.value.details["field"] == "features.seats"
    with pytest.raises(InvalidInput) as refused:
        validate_features({"SSO": True})
    assert refused.value.details["field"] == "features"


def test_an_orgs_own_values_replace_its_plans_and_may_add_to_them() -> None:
    plan = {"sso": False, "max_projects": 5}
    assert entitlements(plan, {}) == plan
    got = entitlements(plan, {"max_projects": 50, "audit_log": True})
    assert got == {"audit_log": True, "max_projects": 50, "sso": False}
    assert list(got) == ["audit_log", "max_projects", "sso"]  # in key order


def test_values_are_stored_as_json_and_read_back_with_their_type() -> None:
    for value in (True, False, 0, 7, "priority"):
        assert value_of(value_text(value)) == value
        assert type(value_of(value_text(value))) is type(value)
    assert value_text(True) == "true"
    assert value_text("a") == '"a"'


def test_a_value_is_described_in_a_word() -> None:
    assert [describe(v) for v in (True, False, 5_000, "priority")] == [
        "yes",
        "no",
        "5,000",
        "priority",
    ]
