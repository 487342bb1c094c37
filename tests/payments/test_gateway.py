"""The kernel's Stripe calls against a real Stripe-compatible server (localstripe, through
the official library): customers, the card on file, collecting to the smallest unit, a
decline as an answer, and Stripe unreachable or refusing as errors that say which."""

from decimal import Decimal

import pytest
import stripe

from billing_kernel.payments.gateway import (
    StripeGateway,
    StripeRefused,
    StripeUnavailable,
    charge_of_checkout,
)
from billing_kernel.payments.rules import Charge, PaymentStatus
from tests.live import free_port
from tests.payments.conftest import DECLINES_WHEN_CHARGED, PAYS, save_card
from tests.payments.stripe_server import TEST_KEY, StripeServer

pytestmark = pytest.mark.anyio


async def first_attempt(
    gateway: StripeGateway, invoice_id: str, customer_id: str, card: str, amount: str, currency: str
) -> Charge:
    return await gateway.collect(
        invoice_id=invoice_id,
        attempt=1,
        customer_id=customer_id,
        payment_method_id=card,
        amount=Decimal(amount),
        currency=currency,
    )


async def test_a_customer_is_made_with_the_orgs_name_email_and_id(
    server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    gateway = StripeGateway(TEST_KEY, server.base)
    customer_id = await gateway.create_customer("acme", "Acme Inc.", "billing@acme.test")
    made = stripe_client.v1.customers.retrieve(customer_id)
    assert (made.name, made.email, made.metadata.to_dict()) == (
        "Acme Inc.",
        "billing@acme.test",
        {"org_id": "acme"},
    )
    assert await gateway.default_card(customer_id) is None
    save_card(stripe_client, customer_id, PAYS)
    card = await gateway.default_card(customer_id)
    assert card is not None
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2031)


@pytest.mark.parametrize(
    ("amount", "currency", "on_stripe"),
    [("59.28", "USD", (5928, "usd")), ("1234", "JPY", (1234, "jpy"))],
)
async def test_an_invoice_is_collected_to_the_smallest_unit(
    server: StripeServer,
    stripe_client: stripe.StripeClient,
    amount: str,
    currency: str,
    on_stripe: tuple[int, str],
) -> None:
    gateway = StripeGateway(TEST_KEY, server.base)
    customer_id = await gateway.create_customer("acme", "Acme Inc.", None)
    card = save_card(stripe_client, customer_id, PAYS)
    charge = await first_attempt(gateway, "inv_1", customer_id, card, amount, currency)
    assert (charge.status, charge.amount, charge.currency) == (
        PaymentStatus.SUCCEEDED,
        Decimal(amount),
        currency,
    )
    assert charge.payment_intent_id is not None
    intent = stripe_client.v1.payment_intents.retrieve(charge.payment_intent_id)
    assert (intent.amount, intent.currency, intent.status) == (*on_stripe, "succeeded")
    assert intent.metadata.to_dict() == {"invoice_id": "inv_1", "attempt": "1"}
    assert (await gateway.payment_intent(charge.payment_intent_id)) == charge


async def test_a_card_that_declines_when_charged_is_a_failed_charge_with_stripes_reason(
    server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    gateway = StripeGateway(TEST_KEY, server.base)
    customer_id = await gateway.create_customer("acme", "Acme Inc.", None)
    card = save_card(stripe_client, customer_id, DECLINES_WHEN_CHARGED)
    charge = await first_attempt(gateway, "inv_2", customer_id, card, "49.00", "USD")
    assert (charge.status, charge.failure_code) == (PaymentStatus.FAILED, "card_declined")
    assert charge.failure == "Your card was declined."
    made = stripe_client.v1.payment_intents.list().data
    assert len(made) == 1  # one PaymentIntent, declined: nothing charged
    assert charge.payment_intent_id in (None, made[0].id)


async def test_stripe_unreachable_or_refusing_is_an_error_that_says_which(
    server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    down = StripeGateway(TEST_KEY, f"http://127.0.0.1:{free_port()}", timeout=5)
    with pytest.raises(StripeUnavailable, match="Stripe could not be reached"):
        await down.create_customer("acme", "Acme Inc.", None)
    gateway = StripeGateway(TEST_KEY, server.base)
    with pytest.raises(StripeRefused, match=r"Stripe refused the call \(404\)"):
        await gateway.default_card("cus_nobody")


def test_a_pay_now_page_reads_as_paid_left_unpaid_or_not_yet_known() -> None:
    """As `checkout.session.*` events carry a Checkout Session in payment mode (Stripe's
    API reference: `status`, `payment_status`, `amount_total`, `payment_intent`)."""
    session = {"amount_total": 4975, "currency": "usd", "payment_intent": None}
    assert charge_of_checkout(session | {"status": "expired", "payment_status": "unpaid"}) == (
        Charge(None, PaymentStatus.CANCELED, Decimal("49.75"), "USD")
    )
    paid = session | {"status": "complete", "payment_status": "paid", "payment_intent": "pi_9"}
    assert charge_of_checkout(paid) == Charge(
        "pi_9", PaymentStatus.SUCCEEDED, Decimal("49.75"), "USD"
    )
    expanded = paid | {
        "payment_intent": {"id": "pi_9", "object": "payment_intent"},
        "currency": "jpy",
    }
    assert charge_of_checkout(expanded | {"amount_total": 1234}) == (
        Charge("pi_9", PaymentStatus.SUCCEEDED, Decimal(1234), "JPY")
    )
    deciding = paid | {"payment_status": "unpaid"}  # a bank debit: its PaymentIntent tells
    assert charge_of_checkout(deciding) is None
    assert charge_of_checkout(session | {"status": "open", "payment_status": "unpaid"}) is None
