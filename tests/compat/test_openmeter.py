"""OpenMeter's own Python client against the kernel: only the endpoint and the key change."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from corehttp.exceptions import ClientAuthenticationError, HttpResponseError
from openmeter import Client
from openmeter.models import Event

from tests.compat.conftest import Live

pytestmark = pytest.mark.long


def openmeter(live: Live, key: str | None = None) -> Client:
    return Client(endpoint=f"{live.url}/compat/openmeter", token=key or live.key)


def cloud_event(subject: str, value: object, **fields: object) -> Event:
    return Event(
        id=str(fields.pop("id", uuid.uuid4())),
        source="tests",
        specversion="1.0",
        type=str(fields.pop("type", "tokens")),
        subject=subject,
        time=datetime.now(UTC) - timedelta(minutes=1),
        data={"value": value, "model": "gpt-5"},
    )


def test_single_and_batched_events_count_once_per_id(live: Live) -> None:
    org = live.new_org()
    client = openmeter(live)
    single = cloud_event(org, 100, id="evt-1")
    client.events.ingest_events_json(single)
    client.events.ingest_events_json(single)  # a retry: counted once
    batch = [cloud_event(org, n) for n in (20, 3)] + [cloud_event(org, 1, type="playbook_runs")]
    client.events.ingest_events(batch)
    client.events.ingest_events(batch)
    assert live.used(org) == 123
    assert live.used(org, "playbook_runs") == 1
    assert live.groups(org, "model") == {"gpt-5": 123}  # `data` is kept with each event


def test_an_id_sent_again_with_another_payload_counts_once_as_openmeter_deduplicates(
    live: Live,
) -> None:
    """OpenMeter deduplicates by id whatever the event carries; its JavaScript client stamps a
    new `time` on every send, so a retry differs. Counted once, as first sent: 204."""
    org = live.new_org()
    client = openmeter(live)
    client.events.ingest_events_json(cloud_event(org, 7, id="evt-again"))
    retried = cloud_event(org, 7, id="evt-again")
    retried.time = datetime.now(UTC)
    client.events.ingest_events_json(retried)
    client.events.ingest_events([cloud_event(org, 9, id="evt-again"), cloud_event(org, 1)])
    assert live.used(org) == 8
    [kept] = [e for e in live.events(org) if e["idempotency_key"] == "evt-again"]
    assert (kept["quantity"], kept["changed_repeats"]) == (7, 2)


def test_a_malformed_value_raises_and_writes_nothing(live: Live) -> None:
    org = live.new_org()
    with pytest.raises(HttpResponseError) as refused:
        openmeter(live).events.ingest_events([cloud_event(org, 5), cloud_event(org, "1.5")])
    assert refused.value.status_code == 400
    assert "event 1: metric 'tokens': data.value must be a whole number" in str(
        refused.value.response.json()
    )
    assert live.used(org) == 0


def test_the_entitlement_value_is_the_kernels_quota_decision(live: Live) -> None:
    alias = f"subject-{uuid.uuid4().hex[:8]}"
    org = live.new_org(alias, plan="starter")  # 200 runs included
    client = openmeter(live)
    client.events.ingest_events([cloud_event(alias, 150, type="playbook_runs")])
    within = client.customer_entitlement.get_customer_entitlement_value(alias, "playbook_runs")
    assert (within.has_access, within.usage, within.balance, within.overage) == (
        True,
        150,
        50,
        0,
    )
    live.put(f"/api/v1/orgs/{org}/limits/playbook_runs", {"mode": "hard", "grace_percent": 0})
    client.events.ingest_events([cloud_event(alias, 60, type="playbook_runs")])
    beyond = client.customer_entitlement.get_customer_entitlement_value(alias, "playbook_runs")
    assert (beyond.has_access, beyond.usage, beyond.balance, beyond.overage) == (
        False,  # a hard limit, used up
        210,
        0,
        10,
    )
    # The older subjects path answers alike (this client version no longer reaches it).
    older = f"/compat/openmeter/api/v1/subjects/{alias}/entitlements/playbook_runs/value"
    assert live._get(older) == {"hasAccess": False, "usage": 210, "balance": 0, "overage": 10}
    live.put(f"/api/v1/orgs/{org}/limits/tokens", {"included_quantity": None})
    unlimited = client.customer_entitlement.get_customer_entitlement_value(alias, "tokens")
    assert (unlimited.has_access, unlimited.usage, unlimited.balance, unlimited.overage) == (
        True,
        0,
        None,
        0,
    )


def test_unknown_features_customers_and_keys_raise(live: Live) -> None:
    org = live.new_org()
    client = openmeter(live)
    with pytest.raises(HttpResponseError) as feature:
        client.customer_entitlement.get_customer_entitlement_value(org, "no_such_metric")
    assert feature.value.status_code == 404
    with pytest.raises(HttpResponseError) as customer:
        client.customer_entitlement.get_customer_entitlement_value("no-such-org", "tokens")
    assert customer.value.status_code == 404
    with pytest.raises(ClientAuthenticationError):
        openmeter(live, "bk_wrong").events.ingest_events([cloud_event(org, 1)])


def test_problems_name_the_cloud_events_attributes_and_carry_a_uri(live: Live) -> None:
    """An event too old to count is refused naming its `time` (the kernel's `occurred_at`
    is not the sender's word), and the problem's `instance` is a URI, as OpenMeter's
    description has it."""
    org = live.new_org()
    old = cloud_event(org, 1)
    old.time = datetime.now(UTC) - timedelta(days=60)
    with pytest.raises(HttpResponseError) as refused:
        openmeter(live).events.ingest_events([old])
    problem = refused.value.response.json()
    assert refused.value.status_code == 400
    assert problem["detail"].startswith("event 0: time: ")
    assert "occurred_at" not in problem["detail"]
    assert uuid.UUID(problem["instance"].removeprefix("urn:uuid:"))
    assert problem["instance"].startswith("urn:uuid:")
    assert live.used(org) == 0
