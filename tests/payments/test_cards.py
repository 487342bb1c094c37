"""The card on file, kept as Stripe has it: told by webhook when it changes at Stripe,
asked of Stripe at most every few hours for an org whose invoice waits for one, and an
attempt finished on the card it was written for."""

import asyncio

import pytest
import stripe

from billing_kernel.db.database import Database
from billing_kernel.payments.rules import PaymentStatus
from billing_kernel.payments.service import CARD_CHECK_EVERY, UNFINISHED_AFTER
from tests.client.faulty_proxy import FaultyProxy
from tests.conftest import Clock, make_kernel
from tests.payments.conftest import DECLINES_WHEN_CHARGED, PAYS, WEBHOOK_SECRET, save_card, signed
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.payments.test_service import intents, invoiced, paying

pytestmark = pytest.mark.anyio


def customer_updated(client: stripe.StripeClient, customer_id: str, n: int) -> dict[str, object]:
    """The `customer.updated` event Stripe sends once the customer's default card changed."""
    customer = client.v1.customers.retrieve(customer_id).to_dict()
    return {"id": f"evt_cu_{n}", "type": "customer.updated", "data": {"object": customer}}


async def test_a_card_changed_at_stripe_is_kept_from_its_webhook(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    customer_id = await kernel.payments.customer(invoice.org_id)
    assert customer_id is not None
    save_card(stripe_client, customer_id, PAYS)  # in Stripe's dashboard, say
    event = customer_updated(stripe_client, customer_id, 1)
    for outcome in ("card_added", "duplicate"):
        body, headers = signed(event)
        assert await kernel.payments.receive(body, headers["Stripe-Signature"]) == outcome
    card = await kernel.payments.card(invoice.org_id)
    assert card is not None
    assert (card.brand, card.last4) == ("visa", "4242")
    stripe_client.v1.customers.update(
        customer_id, params={"invoice_settings": {"default_payment_method": ""}}
    )
    body, headers = signed(customer_updated(stripe_client, customer_id, 2))
    assert await kernel.payments.receive(body, headers["Stripe-Signature"]) == "card_removed"
    assert await kernel.payments.card(invoice.org_id) is None
    stranger = stripe_client.v1.customers.create(params={"name": "not ours"})
    body, headers = signed(customer_updated(stripe_client, stranger.id, 3))
    assert await kernel.payments.receive(body, headers["Stripe-Signature"]) == "unknown_customer"


async def test_stripe_is_asked_for_a_waiting_orgs_card_only_every_few_hours(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """An invoice waits for a card: the first round asks Stripe for one, the next rounds
    do not (counted at a proxy in front of Stripe) until CARD_CHECK_EVERY has passed; a
    card found then is kept and charged."""
    invoice = await invoiced(paying(database, clock, server), clock)
    proxy = FaultyProxy(server.base)
    try:
        kernel = make_kernel(
            database,
            clock,
            stripe_api_key=TEST_KEY,
            stripe_api_base=proxy.url,
            stripe_webhook_secret=WEBHOOK_SECRET,
        )
        customer_id = await kernel.payments.customer(invoice.org_id)
        assert customer_id is not None

        def asked() -> int:
            return sum(1 for seen in proxy.requests if seen == f"GET /v1/customers/{customer_id}")

        assert await kernel.payments.collect_due() == []
        assert asked() == 1
        for _ in range(3):
            clock.advance(minutes=1)
            assert await kernel.payments.collect_due() == []
        assert asked() == 1  # not at every round
        save_card(stripe_client, customer_id, PAYS)  # its webhook missed
        clock.advance(seconds=CARD_CHECK_EVERY.total_seconds())
        [paid] = await kernel.payments.collect_due()
        assert asked() == 2
    finally:
        proxy.close()
    assert paid.status is PaymentStatus.SUCCEEDED
    assert await kernel.payments.card(invoice.org_id) is not None  # kept, for the page


async def test_an_attempt_left_pending_is_finished_on_the_card_it_was_written_for(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """The worker wrote the attempt for one card and died before asking Stripe; the
    default card changed meanwhile. The attempt is finished as written, on its card, with
    its key; the new card is for the next attempt."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    customer_id = await kernel.payments.customer(invoice.org_id)
    assert customer_id is not None
    first = save_card(stripe_client, customer_id, DECLINES_WHEN_CHARGED)
    dying = paying(database, clock, server)

    async def killed(*args: object, **kwargs: object) -> object:
        raise asyncio.CancelledError  # before Stripe is asked

    dying.payments._charge = killed  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await dying.payments.collect(invoice.invoice_id)
    [pending] = await kernel.payments.attempts(invoice.invoice_id)
    assert (pending.status, pending.stripe_payment_method_id) == (PaymentStatus.PENDING, first)
    save_card(stripe_client, customer_id, PAYS)
    clock.advance(seconds=UNFINISHED_AFTER.total_seconds() + 1)
    [finished] = await kernel.payments.collect_due()
    assert (finished.attempt, finished.status) == (1, PaymentStatus.FAILED)  # its own card
    [intent] = intents(stripe_client)
    assert intent.payment_method == first
