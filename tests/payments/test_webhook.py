"""`POST /api/v1/payments/stripe/webhook`: an event is verified by its signature, applied
once for ever by its id, in any order; a bad signature stores nothing."""

from collections.abc import AsyncIterator
from typing import Any

import pytest
import stripe
from sqlalchemy import func, select

from billing_kernel.auth.rules import Scope
from billing_kernel.db.database import Database
from billing_kernel.db.tables import stripe_events
from billing_kernel.invoices.rules import StoredInvoice
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.payments.rules import PaymentStatus
from tests.conftest import Clock
from tests.payments.conftest import PAYS, WEBHOOK_SECRET, signed
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.payments.test_service import (
    card_through_checkout,
    dies_after_stripe_answered,
    invoiced,
    paying,
    with_card,
)
from tests.web import app_for

pytestmark = pytest.mark.anyio

URL = "/api/v1/payments/stripe/webhook"


def intent_event(event_id: str, kind: str, intent: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "object": "event", "type": kind, "data": {"object": intent}}


@pytest.fixture
async def client(database: Database, server: StripeServer) -> AsyncIterator[Any]:
    async with app_for(
        database,
        stripe_api_key=TEST_KEY,
        stripe_api_base=server.base,
        stripe_webhook_secret=WEBHOOK_SECRET,
    ) as http:
        yield http


async def charged_unrecorded(
    database: Database, clock: Clock, server: StripeServer, client: stripe.StripeClient
) -> tuple[Kernel, StoredInvoice, dict[str, Any]]:
    """An invoice whose collection Stripe made, the worker killed before it recorded it:
    the kernel, the invoice, and the PaymentIntent as Stripe has it."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, client, invoice.org_id, PAYS)
    await dies_after_stripe_answered(paying(database, clock, server), invoice)
    [intent] = client.v1.payment_intents.list().data
    return kernel, invoice, intent.to_dict()


async def stored_events(database: Database) -> int:
    async with database.transaction() as conn:
        return int((await conn.execute(select(func.count()).select_from(stripe_events))).scalar())


async def test_a_success_pays_once_and_a_late_failure_leaves_it_paid(
    database: Database,
    clock: Clock,
    server: StripeServer,
    stripe_client: stripe.StripeClient,
    client: Any,
) -> None:
    kernel, invoice, intent = await charged_unrecorded(database, clock, server, stripe_client)
    succeeded = intent_event("evt_1", "payment_intent.succeeded", intent)
    for expected in ("mark_paid", "duplicate"):  # the same event delivered twice
        body, headers = signed(succeeded)
        answer = await client.post(URL, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"received": True, "outcome": expected}
    paid = await kernel.invoices.get(invoice.invoice_id)
    [payment] = await kernel.payments.attempts(invoice.invoice_id)
    assert (paid.status, paid.paid_by, payment.status) == (
        "paid",
        payment.payment_id,
        PaymentStatus.SUCCEEDED,
    )
    failed_intent = intent | {
        "status": "requires_payment_method",
        "last_payment_error": {"code": "card_declined", "message": "Your card was declined."},
    }
    body, headers = signed(intent_event("evt_0", "payment_intent.payment_failed", failed_intent))
    late = await client.post(URL, content=body, headers=headers)
    assert late.json() == {"received": True, "outcome": "none"}
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "paid"
    state = await kernel.subscriptions.billing_state(invoice.org_id)
    assert state.status is BillingStatus.ACTIVE
    assert await stored_events(database) == 2


async def test_a_failure_first_then_the_success_pays(
    database: Database,
    clock: Clock,
    server: StripeServer,
    stripe_client: stripe.StripeClient,
    client: Any,
) -> None:
    kernel, invoice, intent = await charged_unrecorded(database, clock, server, stripe_client)
    failed_intent = intent | {"status": "requires_payment_method", "last_payment_error": None}
    body, headers = signed(intent_event("evt_a", "payment_intent.payment_failed", failed_intent))
    assert (await client.post(URL, content=body, headers=headers)).json()["outcome"] == "past_due"
    past_due = await kernel.subscriptions.billing_state(invoice.org_id)
    assert past_due.status is BillingStatus.PAST_DUE
    body, headers = signed(intent_event("evt_b", "payment_intent.succeeded", intent))
    assert (await client.post(URL, content=body, headers=headers)).json()["outcome"] == "mark_paid"
    state = await kernel.subscriptions.billing_state(invoice.org_id)
    assert state.status is BillingStatus.ACTIVE  # nothing else is overdue


async def test_a_bad_signature_is_a_400_and_stores_nothing(
    database: Database,
    clock: Clock,
    server: StripeServer,
    stripe_client: stripe.StripeClient,
    client: Any,
) -> None:
    kernel, invoice, intent = await charged_unrecorded(database, clock, server, stripe_client)
    before = await stored_events(database)
    event = intent_event("evt_forged", "payment_intent.succeeded", intent)
    body, headers = signed(event, secret="whsec_someone_else")
    tampered, good = signed(event)[0].replace(b"evt_forged", b"evt_altered"), signed(event)[1]
    for sent, sent_headers in (
        (body, headers),
        (tampered, good),
        (body, {"Content-Type": "application/json"}),
    ):
        answer = await client.post(URL, content=sent, headers=sent_headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "invalid_signature"
    assert await stored_events(database) == before
    [payment] = await kernel.payments.attempts(invoice.invoice_id)
    assert payment.status is PaymentStatus.PENDING
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "open"


async def test_other_events_and_payments_the_kernel_did_not_make_are_noted_not_applied(
    database: Database, server: StripeServer, stripe_client: stripe.StripeClient, client: Any
) -> None:
    stranger = {"id": "pi_elsewhere", "object": "payment_intent", "status": "succeeded",
                "amount": 100, "currency": "usd", "metadata": {}}  # fmt: skip
    for event, outcome in (
        (intent_event("evt_x", "payment_intent.succeeded", stranger), "unknown_payment"),
        (intent_event("evt_y", "customer.created", {"id": "cus_1"}), "ignored"),
    ):
        body, headers = signed(event)
        assert (await client.post(URL, content=body, headers=headers)).json() == {
            "received": True,
            "outcome": outcome,
        }


async def test_a_deployment_without_stripe_answers_404(database: Database) -> None:
    async with app_for(database) as http:
        body, headers = signed(intent_event("evt_z", "payment_intent.succeeded", {"id": "pi"}))
        answer = await http.post(URL, content=body, headers=headers)
    assert answer.status_code == 404
    assert answer.json()["code"] == "payments_off"


async def test_owners_read_the_card_and_each_invoices_attempts_over_the_api(
    database: Database,
    clock: Clock,
    server: StripeServer,
    stripe_client: stripe.StripeClient,
    client: Any,
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await card_through_checkout(kernel, server, stripe_client, invoice.org_id, PAYS)
    [payment] = await kernel.payments.collect_due()
    _, plaintext = await kernel.api_keys.create([Scope.BILLING_ADMIN], org_id=invoice.org_id)
    key = {"Authorization": f"Bearer {plaintext}"}
    method = (await client.get("/api/v1/billing/org/payment-method", headers=key)).json()
    assert method == {
        "collecting": True,
        "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2031},
    }
    url = f"/api/v1/billing/org/invoices/{invoice.invoice_id}/payments"
    [attempt] = (await client.get(url, headers=key)).json()["data"]
    assert {k: attempt[k] for k in ("payment_id", "attempt", "status", "amount", "currency")} == {
        "payment_id": payment.payment_id,
        "attempt": 1,
        "status": "succeeded",
        "amount": "49.75",
        "currency": "USD",
    }
    read = await client.get(f"/api/v1/billing/org/invoices/{invoice.invoice_id}", headers=key)
    assert (read.json()["status"], read.json()["paid_by"]) == ("paid", payment.payment_id)
    other = await invoiced(kernel, clock)
    await kernel.invoices.mark_paid(other.number)  # a bank transfer, marked by hand
    assert (await kernel.invoices.get(other.invoice_id)).paid_by is None
    elsewhere = f"/api/v1/billing/org/invoices/{other.invoice_id}/payments"
    assert (await client.get(elsewhere, headers=key)).status_code == 404
    member = await kernel.api_keys.create([Scope.QUOTA_CHECK], org_id=invoice.org_id)
    refused = await client.get(url, headers={"Authorization": f"Bearer {member[1]}"})
    assert refused.status_code == 403
