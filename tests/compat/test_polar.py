"""Polar's own Python SDK against the kernel's event ingestion: only the base URL and the
key change."""

from __future__ import annotations

import uuid

import httpx
import pytest
from polar.v2026_10 import Polar
from polar.v2026_10.errors import HTTPValidationError

from tests.compat.conftest import Live

pytestmark = pytest.mark.long


def polar(live: Live) -> Polar:
    return Polar(access_token=live.key, base_url=f"{live.url}/compat/polar")


def test_events_count_once_per_external_id(live: Live) -> None:
    org = live.new_org()
    events = [
        {
            "name": "tokens",
            "external_customer_id": org,
            "external_id": str(uuid.uuid4()),
            "metadata": {"value": n, "model": "gpt-5"},
        }
        for n in (10, 200)
    ]
    first = polar(live).events.ingest(events=events)
    assert (first.inserted, first.duplicates) == (2, 0)
    again = polar(live).events.ingest(events=events)
    assert (again.inserted, again.duplicates) == (0, 2)
    assert live.used(org) == 210


def test_polars_customer_id_names_an_org_by_alias(live: Live) -> None:
    customer = str(uuid.uuid4())
    org = live.new_org(customer)
    answer = polar(live).events.ingest(
        events=[{"name": "playbook_runs", "customer_id": customer, "metadata": {"value": 2}}]
    )
    assert answer.inserted == 1
    assert live.used(org, "playbook_runs") == 2


def test_a_malformed_value_raises_the_validation_error(live: Live) -> None:
    org = live.new_org()
    with pytest.raises(HTTPValidationError) as refused:
        polar(live).events.ingest(
            events=[
                {"name": "tokens", "external_customer_id": org, "metadata": {"value": 1}},
                {"name": "tokens", "external_customer_id": org, "metadata": {"value": "x"}},
            ]
        )
    [problem] = refused.value.error.detail or []
    assert problem.loc == ["body", "events", 1, "metadata", "value"]
    assert live.used(org) == 0


def test_a_reused_external_id_is_a_duplicate_as_polar_counts_it(live: Live) -> None:
    """Polar answers an `external_id` sent again with another payload as a duplicate
    (200): so does the kernel, and the event counts once, as first sent."""
    org = live.new_org()
    key = str(uuid.uuid4())
    sent = {"name": "tokens", "external_customer_id": org, "external_id": key}
    first = polar(live).events.ingest(events=[{**sent, "metadata": {"value": 10}}])
    assert (first.inserted, first.duplicates) == (1, 0)
    changed = polar(live).events.ingest(events=[{**sent, "metadata": {"value": 99}}])
    assert (changed.inserted, changed.duplicates) == (0, 1)
    same = polar(live).events.ingest(events=[{**sent, "metadata": {"value": 10}}])
    assert (same.inserted, same.duplicates) == (0, 1)
    polar(live).events.ingest(events=[{**sent, "metadata": {"value": 7}}])
    assert live.used(org) == 10
    [event] = live.events(org)  # read back as first sent, with the changed repeats counted
    assert (event["quantity"], event["changed_repeats"]) == (10, 2)
    assert event["last_changed_repeat_at"] >= event["received_at"]


def test_polars_customer_must_be_a_known_uuid_and_times_date_time_text(live: Live) -> None:
    """A `customer_id` is Polar's customer (a UUID one of the orgs goes by): an unknown one
    is refused as Polar refuses it (422 "Customer not found"), never made into an org; a
    non-UUID or a Unix-seconds `timestamp` is refused as Polar's description has it."""
    org = live.new_org()
    stranger = str(uuid.uuid4())
    cases = [
        ({"customer_id": stranger}, ["customer_id"], "Customer not found"),
        ({"customer_id": "cus_123"}, ["customer_id"], "Input should be a valid UUID"),
        (
            {"external_customer_id": org, "timestamp": 1_764_000_000},
            ["timestamp"],
            "Input should be a valid datetime",
        ),
    ]
    for fields, loc, message in cases:
        event = {"name": "tokens", "metadata": {"value": 1}, **fields}
        with pytest.raises(HTTPValidationError) as refused:
            polar(live).events.ingest(events=[event])  # type: ignore[list-item]
        [problem] = refused.value.error.detail or []
        assert (problem.loc, problem.msg) == (["body", "events", 0, *loc], message)
    assert live.used(org) == 0
    made = httpx.get(
        f"{live.url}/api/v1/billing/org/summary",
        headers={"Authorization": f"Bearer {live.key}", "X-Org-Id": stranger},
    )
    assert made.status_code == 404  # no org was made for Polar's unknown customer


def test_polars_errors_carry_polars_names(live: Live) -> None:
    body = {
        "events": [{"name": "tokens", "external_customer_id": "acme", "metadata": {"value": 1}}]
    }
    answer = httpx.post(
        f"{live.url}/compat/polar/v1/events/ingest",
        json=body,
        headers={"Authorization": "Bearer bk_wrong_key_0000000000000000"},
    )
    assert (answer.status_code, answer.json()["error"]) == (401, "Unauthorized")
