"""What the payments tests share: one localstripe per test module, emptied before each test,
and what an org's browser does through Stripe Checkout (a card saved as the default)."""

from collections.abc import Iterator

import pytest
import stripe

from tests.payments.stripe_server import TEST_KEY, StripeServer, stripe_server

PAYS = "4242424242424242"
DECLINES_WHEN_CHARGED = "4000000000000341"
"""Attaches, then declines when charged (localstripe's and Stripe's test card)."""


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
