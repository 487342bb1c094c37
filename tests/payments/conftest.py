"""What the payments tests share: one localstripe per test module, emptied before each test,
and what an org's browser does through Stripe Checkout (a card saved as the default)."""

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from billing_kernel.db.database import Database
from tests.payments.stripe_server import TEST_KEY, StripeServer, stripe_server

PAYS = "4242424242424242"
WEBHOOK_SECRET = "whsec_billing_kernel_test"
DECLINES_WHEN_CHARGED = "4000000000000341"
"""Attaches, then declines when charged (localstripe's and Stripe's test card)."""


@pytest.fixture
async def database(own_database: Database) -> Database:
    """Each payments test on a database of its own: the worker's round collects every
    org's invoices, and Stripe is emptied before each test."""
    return own_database


@pytest.fixture(scope="module")
def server() -> Iterator[StripeServer]:
    with stripe_server() as running:
        yield running


@pytest.fixture
def stripe_client(server: StripeServer) -> stripe.StripeClient:
    """Stripe as the test reads it, emptied first."""
    server.reset()
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": server.base})


def save_card(client: stripe.StripeClient, customer_id: str, number: str) -> str:
    """A card added through Checkout in setup mode: attached, the customer's default."""
    card = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    method = client.v1.payment_methods.create(params={"type": "card", "card": card})  # type: ignore[typeddict-item]
    client.v1.payment_methods.attach(method.id, params={"customer": customer_id})
    client.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": method.id}}
    )
    return str(method.id)


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict[str, str]]:
    """The body and `Stripe-Signature` Stripe sends: an HMAC-SHA256 of `{t}.{body}`."""
    body = json.dumps(event).encode()
    stamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Stripe-Signature": f"t={stamp},v1={mac}", "Content-Type": "application/json"}


def complete_checkout(
    server: StripeServer, client: stripe.StripeClient, url: str, number: str
) -> dict[str, Any]:
    """What the org's owner does on the Checkout page at `url` (setup mode): enters a card,
    which Stripe saves on a SetupIntent for the customer. The event Stripe then sends,
    `checkout.session.completed`."""
    session_id = url.rsplit("/", 1)[1]
    session = client.v1.checkout.sessions.retrieve(session_id)
    card = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    method = client.v1.payment_methods.create(params={"type": "card", "card": card})  # type: ignore[typeddict-item]
    client.v1.payment_methods.attach(method.id, params={"customer": str(session.customer)})
    intent = client.v1.setup_intents.create(
        params={"customer": str(session.customer), "payment_method_types": ["card"]}
    )
    client.v1.setup_intents.confirm(intent.id, params={"payment_method": method.id})
    done = httpx.post(
        f"{server.base}/_config/checkout/{session_id}/complete", data={"setup_intent": intent.id}
    )
    done.raise_for_status()
    return {
        "id": f"evt_{session_id}",
        "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": done.json()},
    }


def pay_on_checkout(
    server: StripeServer, client: stripe.StripeClient, url: str, number: str
) -> list[dict[str, Any]]:
    """What the payer does on the pay-now page at `url` (payment mode): pays with a card,
    which makes a PaymentIntent carrying the page's `payment_intent_data`. The events Stripe
    then sends: `checkout.session.completed` and `payment_intent.succeeded`."""
    session_id = url.rsplit("/", 1)[1]
    session = client.v1.checkout.sessions.retrieve(session_id).to_dict()
    card = {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}
    method = client.v1.payment_methods.create(params={"type": "card", "card": card})  # type: ignore[typeddict-item]
    client.v1.payment_methods.attach(method.id, params={"customer": str(session["customer"])})
    intent = client.v1.payment_intents.create(
        params={
            "amount": session["amount_total"],
            "currency": session["currency"],
            "customer": str(session["customer"]),
            "payment_method": method.id,
            "metadata": session["_intent_metadata"],
        }
    )
    paid = client.v1.payment_intents.confirm(intent.id)
    done = httpx.post(
        f"{server.base}/_config/checkout/{session_id}/complete", data={"payment_intent": paid.id}
    )
    done.raise_for_status()
    return [
        {
            "id": f"evt_{session_id}",
            "object": "event",
            "type": "checkout.session.completed",
            "data": {"object": done.json()},
        },
        {
            "id": f"evt_{paid.id}",
            "object": "event",
            "type": "payment_intent.succeeded",
            "data": {"object": paid.to_dict()},
        },
    ]
