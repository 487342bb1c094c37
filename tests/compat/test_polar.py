"""Polar's own Python SDK against the kernel's event ingestion: only the base URL and the
key change."""

from __future__ import annotations

import uuid

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
