"""Stripe's official Python library against the kernel's meter events: only the API base
and the key change."""

from __future__ import annotations

import time
import uuid

import pytest
import stripe

from tests.compat.conftest import Live

pytestmark = pytest.mark.long


def client(live: Live, key: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(
        key or live.key, base_addresses={"api": f"{live.url}/compat/stripe"}, max_network_retries=0
    )


def meter_event(customer: str, value: str, **fields: str) -> dict[str, object]:
    return {
        "event_name": fields.pop("event_name", "tokens"),
        "payload": {"stripe_customer_id": customer, "value": value, **fields},
        "identifier": str(uuid.uuid4()),
        "timestamp": int(time.time()) - 30,
    }


def test_a_meter_event_counts_once_per_identifier(live: Live) -> None:
    customer = f"cus_{uuid.uuid4().hex[:14]}"
    org = live.new_org(customer)
    sent = meter_event(customer, "25", model="gpt-5")
    answer = client(live).v1.billing.meter_events.create(sent)
    assert (answer.event_name, answer.identifier) == ("tokens", sent["identifier"])
    assert answer.payload.to_dict() == {
        "stripe_customer_id": customer,
        "value": "25",
        "model": "gpt-5",
    }
    assert answer.timestamp == sent["timestamp"]
    client(live).v1.billing.meter_events.create(sent)
    client(live).v1.billing.meter_events.create(meter_event(customer, "5"))
    assert live.used(org) == 30
    assert live.groups(org, "model") == {"gpt-5": 25, None: 5}


def test_malformed_events_raise_invalid_request_errors(live: Live) -> None:
    org = live.new_org()
    with pytest.raises(stripe.InvalidRequestError) as value:
        client(live).v1.billing.meter_events.create(meter_event(org, "2.5"))
    assert (value.value.http_status, value.value.param) == (400, "payload[value]")
    with pytest.raises(stripe.InvalidRequestError) as name:
        client(live).v1.billing.meter_events.create(
            meter_event(org, "2", event_name="unknown_meter")
        )
    assert name.value.param == "event_name"
    reused = meter_event(org, "1")
    client(live).v1.billing.meter_events.create(reused)
    with pytest.raises(stripe.InvalidRequestError) as conflict:
        client(live).v1.billing.meter_events.create(
            {**reused, "payload": {"stripe_customer_id": org, "value": "9"}}
        )
    assert conflict.value.code == "idempotency_conflict"
    assert live.used(org) == 1


def test_a_wrong_key_raises_an_authentication_error(live: Live) -> None:
    with pytest.raises(stripe.AuthenticationError):
        client(live, "sk_test_123").v1.billing.meter_events.create(meter_event(live.new_org(), "1"))
