"""An org's own rules: the state it starts in, and its aliases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing_kernel.errors import InvalidInput, NoDefaultPlan, OrgNotFound
from billing_kernel.orgs.rules import (
    MAX_ALIASES,
    Admission,
    BillingStatus,
    billable,
    new_trial_state,
    validate_aliases,
)


def test_a_new_org_starts_in_trial_on_the_plan_version_given() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=timezone(timedelta(hours=2)))
    state = new_trial_state("acme", "starter", now, 14)
    assert (state.org_id, state.plan_slug, state.plan_version) == ("acme", "starter", 1)
    assert state.status is BillingStatus.TRIAL
    assert state.trial_ends_at == datetime(2026, 12, 12, 10, tzinfo=UTC)
    assert state.created_at == state.updated_at == state.status_since == now
    assert state.created_at.tzinfo is UTC
    assert new_trial_state("acme", "starter", now, 14, 3).plan_version == 3


def test_aliases_are_ids_sorted_without_repeats_and_bounded() -> None:
    assert validate_aliases(["b", "a", "b"]) == ["a", "b"]
    assert validate_aliases([]) == []
    assert len(validate_aliases([f"a{n}" for n in range(MAX_ALIASES)])) == MAX_ALIASES
    assert validate_aliases(["x"] * (MAX_ALIASES + 5)) == ["x"]
    with pytest.raises(InvalidInput) as too_many:
        validate_aliases([f"a{n}" for n in range(MAX_ALIASES + 1)])
    assert too_many.value.details["field"] == "aliases"
    assert too_many.value.message == f"an org has at most {MAX_ALIASES} aliases"
    for bad in ("", " a", 3, "a" * 256):
        with pytest.raises(InvalidInput) as refused:
            validate_aliases(["ok", bad])
        assert refused.value.details["field"] == "aliases[1]"
    assert validate_aliases(["a" * 255]) == ["a" * 255]


def test_only_active_and_past_due_time_is_billed() -> None:
    assert {status for status in BillingStatus if billable(status)} == {
        BillingStatus.ACTIVE,
        BillingStatus.PAST_DUE,
    }


def test_usage_for_an_org_left_unknown_is_refused_with_why_it_was_not_created() -> None:
    off = Admission(created=frozenset(), unknown=frozenset({"acme"}))
    refused = off.refusal("acme")
    assert isinstance(refused, OrgNotFound)
    assert refused.message == "unknown org 'acme' (BILLING_AUTO_CREATE_ORGS is false)"
    assert refused.details == {"org_id": "acme"}
    no_plan = NoDefaultPlan("no plan is the default")
    without = Admission(created=frozenset(), unknown=frozenset({"acme"}), no_default=no_plan)
    assert without.refusal("acme") is no_plan


def test_trial_days_are_counted_only_in_trial() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    state = new_trial_state("acme", "starter", now, 14)
    assert state.trial_days_left(now) == 14
    assert state.trial_days_left(now + timedelta(days=13, hours=1)) == 1
    assert state.trial_days_left(now + timedelta(days=20)) == 0
    assert replace(state, status=BillingStatus.ACTIVE).trial_days_left(now) is None
    assert replace(state, trial_ends_at=None).trial_days_left(now) is None
