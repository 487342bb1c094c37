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
    # An event no meter counts is taken, as Stripe takes it, and counts toward nothing.
    kept = client(live).v1.billing.meter_events.create(
        meter_event(org, "2", event_name="unknown_meter")
    )
    assert kept.event_name == "unknown_meter"
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


def test_calls_and_parameters_stripe_does_not_take_raise_its_typed_errors(live: Live) -> None:
    """What the kernel does not implement answers as Stripe answers an unknown URL, and a
    parameter or an identifier Stripe would refuse is refused as Stripe refuses it: in each
    case stripe-python raises InvalidRequestError, naming the parameter."""
    org = live.new_org()
    with pytest.raises(stripe.InvalidRequestError) as unknown_call:
        client(live).v1.billing.meters.list()
    assert unknown_call.value.http_status == 404
    assert "Unrecognized request URL (GET: /v1/billing/meters)" in str(unknown_call.value)
    with pytest.raises(stripe.InvalidRequestError) as adjustment:
        client(live).v1.billing.meter_event_adjustments.create(
            {"event_name": "tokens", "cancel": {"identifier": "x"}}
        )
    assert adjustment.value.http_status == 404
    with pytest.raises(stripe.InvalidRequestError) as extra:
        client(live).v1.billing.meter_events.create({**meter_event(org, "1"), "colour": "red"})  # type: ignore[arg-type]
    assert (extra.value.http_status, extra.value.param, extra.value.code) == (
        400,
        "colour",
        "parameter_unknown",
    )
    assert "Received unknown parameter: colour" in str(extra.value)
    with pytest.raises(stripe.InvalidRequestError) as long_key:
        client(live).v1.billing.meter_events.create(
            {**meter_event(org, "1"), "identifier": "k" * 101}
        )
    assert (long_key.value.http_status, long_key.value.param) == (400, "identifier")
    client(live).v1.billing.meter_events.create({**meter_event(org, "1"), "identifier": "k" * 100})
    with pytest.raises(stripe.InvalidRequestError) as badly_named:
        client(live).v1.billing.meter_events.create(meter_event(org, "1", event_name="bad\x01name"))
    assert badly_named.value.param == "event_name"
    assert live.used(org) == 1
