"""Paying an invoice at once on Stripe's Checkout page (payment mode), on both databases:
paid there once, to the cent, whatever order Stripe's events come in; the card on file is
never charged while a page takes payment; a page left unpaid is closed at Stripe before
the card on file is charged, and costs the org nothing in dunning."""

from datetime import datetime, timedelta
from decimal import Decimal

import httpx
import pytest
import stripe

from billing_kernel.auth.rules import Scope
from billing_kernel.db.database import Database
from billing_kernel.errors import InvoiceNotFound, InvoiceNotOpen, PaymentsOff, PaymentUnderWay
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.payments.rules import PAY_NOW_LIFETIME, PAY_NOW_MARGIN, PaymentStatus
from billing_kernel.payments.service import PayNowPage
from tests.conftest import Clock, make_kernel, new_id
from tests.payments.conftest import (
    DECLINES_WHEN_CHARGED,
    PAYS,
    WEBHOOK_SECRET,
    pay_on_checkout,
    signed,
)
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.payments.test_service import (
    card_through_checkout,
    intents,
    invoiced,
    paying,
    told,
    with_card,
)
from tests.web import app_for, bearer, user_token

pytestmark = pytest.mark.anyio

BACK = "https://billing.example/app/billing?org=acme"


def ended(page: PayNowPage) -> datetime:
    """A second past the end of the page's taking payment."""
    assert page.payment.checkout_expires_at is not None
    return page.payment.checkout_expires_at + timedelta(seconds=1)


def session_of(client: stripe.StripeClient, url: str) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.retrieve(url.rsplit("/", 1)[1])


async def test_an_org_without_a_card_pays_now_once_to_the_cent(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    assert await kernel.payments.collect_due() == []  # no card: it waits
    page = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    assert (page.payment.attempt, page.payment.status, page.payment.paid_now) == (
        1,
        PaymentStatus.PENDING,
        True,
    )
    assert page.payment.checkout_expires_at == clock.now + PAY_NOW_LIFETIME
    session = session_of(stripe_client, page.url)
    assert (session.mode, session.amount_total, session.currency, session.expires_at) == (
        "payment",
        4975,
        "usd",
        int((clock.now + PAY_NOW_LIFETIME).timestamp()),
    )
    assert (session.success_url, session.cancel_url) == (
        f"{BACK}&paid=invoice",
        f"{BACK}&paid=canceled",
    )
    assert session.to_dict()["metadata"] == {"invoice_id": invoice.invoice_id, "attempt": "1"}
    # Asked again, the same page: one Session, one attempt.
    clock.advance(minutes=20)
    again = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    assert (again.url, again.payment.payment_id) == (page.url, page.payment.payment_id)
    # The org adds a card meanwhile: the worker still charges nothing while the page is open.
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    assert await kernel.payments.collect_due() == []
    assert intents(stripe_client) == []
    events = pay_on_checkout(server, stripe_client, page.url, PAYS)
    outcomes = []
    for event in events + events:  # each delivered twice
        body, headers = signed(event)
        outcomes.append(await kernel.payments.receive(body, headers["Stripe-Signature"]))
    assert outcomes == ["mark_paid", "none", "duplicate", "duplicate"]
    paid = await kernel.invoices.get(invoice.invoice_id)
    [attempt] = await kernel.payments.attempts(invoice.invoice_id)
    assert (paid.status, paid.paid_by) == ("paid", attempt.payment_id)
    assert (attempt.status, attempt.stripe_payment_intent_id) == (
        PaymentStatus.SUCCEEDED,
        intents(stripe_client)[0].id,
    )
    clock.advance(hours=2)  # past the page's end: nothing more is made
    assert await kernel.payments.collect_due() == []
    assert len(intents(stripe_client)) == 1
    assert await told(kernel, invoice.org_id) == ["payment.succeeded", "payment.card_needed"]
    assert await kernel.payments.verify() == []
    assert await kernel.payments.reconcile(invoice.issued_at) == ([], [])
    with pytest.raises(PaymentUnderWay, match=f"invoice {invoice.number} is paid"):
        await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)


async def test_a_page_left_unpaid_is_closed_before_the_new_card_is_charged(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """A decline, then the owner opens the pay-now page and leaves it; a new card is added
    meanwhile. Nothing is charged until the page has expired; then it is closed at Stripe
    (nobody can pay on it any more), and the new card is charged: once, the dunning count
    not moved by the page."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await card_through_checkout(
        kernel, server, stripe_client, invoice.org_id, DECLINES_WHEN_CHARGED
    )
    [failed] = await kernel.payments.collect_due()
    assert failed.status is PaymentStatus.FAILED
    page = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    assert page.payment.attempt == 2
    await card_through_checkout(kernel, server, stripe_client, invoice.org_id, PAYS)
    assert await kernel.payments.collect_due() == []  # the page takes payment: no charge
    clock.now = ended(page)
    [closed] = await kernel.payments.collect_due()
    assert (closed.attempt, closed.status) == (2, PaymentStatus.CANCELED)
    assert session_of(stripe_client, page.url).status == "expired"
    async with httpx.AsyncClient(base_url=server.base) as http:
        late = await http.post(f"/_config/checkout/{page.url.rsplit('/', 1)[1]}/complete")
    assert late.status_code == 400  # nobody can pay on it now
    [charged] = await kernel.payments.collect_due()
    assert (charged.attempt, charged.status) == (3, PaymentStatus.SUCCEEDED)
    assert sorted(i.status for i in intents(stripe_client)) == [
        "requires_payment_method",
        "succeeded",
    ]
    assert (await kernel.invoices.get(invoice.invoice_id)).paid_by == charged.payment_id
    state = await kernel.subscriptions.billing_state(invoice.org_id)
    assert state.status is BillingStatus.ACTIVE
    assert await kernel.payments.verify() == []


async def test_a_page_paid_as_it_ends_is_counted_when_its_event_was_lost(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """The payer paid, and Stripe's events never reached the kernel: closing the page
    finds it complete, and the payment on it pays the invoice; nothing else is charged."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    page = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    pay_on_checkout(server, stripe_client, page.url, PAYS)  # its events lost
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    clock.now = ended(page)
    [settled] = await kernel.payments.collect_due()
    assert (settled.payment_id, settled.status) == (
        page.payment.payment_id,
        PaymentStatus.SUCCEEDED,
    )
    assert (await kernel.invoices.get(invoice.invoice_id)).paid_by == settled.payment_id
    assert await kernel.payments.collect_due() == []
    assert len(intents(stripe_client)) == 1


async def test_a_page_near_its_end_is_replaced_and_an_expired_one_reported_so(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    first = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    clock.advance(seconds=(PAY_NOW_LIFETIME - PAY_NOW_MARGIN).total_seconds())
    second = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    assert (second.payment.attempt, second.url != first.url) == (2, True)
    assert session_of(stripe_client, first.url).status == "expired"  # closed before
    [closed, _] = await kernel.payments.attempts(invoice.invoice_id)
    assert closed.status is PaymentStatus.CANCELED
    # Stripe's own `checkout.session.expired` for the second: canceled, once.
    expired = stripe_client.v1.checkout.sessions.expire(second.url.rsplit("/", 1)[1]).to_dict()
    event = {"id": "evt_exp", "type": "checkout.session.expired", "data": {"object": expired}}
    for outcome in ("none", "duplicate"):
        body, headers = signed(event)
        assert await kernel.payments.receive(body, headers["Stripe-Signature"]) == outcome
    assert [a.status for a in await kernel.payments.attempts(invoice.invoice_id)] == [
        PaymentStatus.CANCELED,
        PaymentStatus.CANCELED,
    ]
    assert await told(kernel, invoice.org_id) == []  # nothing failed: nothing to tell
    assert (await kernel.subscriptions.billing_state(invoice.org_id)).status is (
        BillingStatus.ACTIVE
    )
    third = await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    assert third.payment.attempt == 3
    assert await kernel.payments.verify() == []


async def test_pay_now_is_refused_where_it_would_pay_twice_or_not_at_all(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    other = await invoiced(kernel, clock)
    with pytest.raises(InvoiceNotFound):  # another org's invoice
        await kernel.payments.pay_now(other.org_id, invoice.invoice_id, BACK)
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    charging = await kernel.payments.collect(invoice.invoice_id)
    assert charging is not None
    assert charging.status is PaymentStatus.SUCCEEDED
    with pytest.raises(PaymentUnderWay, match="is paid"):
        await kernel.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    await kernel.invoices.void(other.invoice_id, "billed in error")
    with pytest.raises(InvoiceNotOpen, match="is void"):
        await kernel.payments.pay_now(other.org_id, other.invoice_id, BACK)
    off = make_kernel(database, clock)
    with pytest.raises(PaymentsOff):
        await off.payments.pay_now(invoice.org_id, invoice.invoice_id, BACK)
    assert len(intents(stripe_client)) == 1
    assert Decimal(invoice.total) == Decimal("49.75")


async def test_owners_and_admin_keys_get_the_page_over_the_api(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """`createPayNowPage`, for a product that shows billing in its own pages: the page, the
    same one when asked again, by a key or by an owner (whose requests read under row-level
    security, while the attempt is written by the kernel); refused, naming why, otherwise."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    other = await invoiced(kernel, clock)
    owner = new_id("owner")
    await kernel.members.add(invoice.org_id, owner, MemberRole.OWNER)
    _, plaintext = await kernel.api_keys.create([Scope.BILLING_ADMIN], org_id=invoice.org_id)
    key = {"Authorization": f"Bearer {plaintext}"}
    url = f"/api/v1/billing/org/invoices/{invoice.invoice_id}/pay"
    stripe_settings = {"stripe_api_key": TEST_KEY, "stripe_webhook_secret": WEBHOOK_SECRET}
    async with app_for(database, stripe_api_base=server.base, **stripe_settings) as http:
        made = await http.post(url, json={"return_url": "https://app.example.com/b"}, headers=key)
        assert made.status_code == 200, made.text
        page = made.json()
        assert page["url"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
        attempt = page["attempt"]
        assert (attempt["kind"], attempt["status"], attempt["attempt"], attempt["amount"]) == (
            "pay_now",
            "pending",
            1,
            "49.75",
        )
        assert attempt["pay_now_until"] is not None
        session = session_of(stripe_client, page["url"])
        assert session.success_url == "https://app.example.com/b?paid=invoice"
        by_owner = await http.post(url, json={}, headers=bearer(user_token(owner)))
        assert by_owner.status_code == 200, by_owner.text
        assert by_owner.json()["url"] == page["url"]  # the same page, handed out again
        listed = await http.get(
            f"/api/v1/billing/org/invoices/{invoice.invoice_id}/payments", headers=key
        )
        assert [a["kind"] for a in listed.json()["data"]] == ["pay_now"]
        for body, field in (
            ({"return_url": "javascript:alert(1)"}, "body.return_url"),
            ({"return_url": "https://a.example", "amount": 1}, "body.amount"),
        ):
            refused = await http.post(url, json=body, headers=key)
            assert refused.status_code == 422
            assert [e["location"] for e in refused.json()["errors"]] == [field]
        elsewhere = f"/api/v1/billing/org/invoices/{other.invoice_id}/pay"
        assert (await http.post(elsewhere, json={}, headers=key)).status_code == 404
        await kernel.invoices.mark_paid(invoice.number)  # a bank transfer, marked by hand
        paid = await http.post(url, json={}, headers=key)
        assert (paid.status_code, paid.json()["code"]) == (409, "payment_under_way")
        checker = (await kernel.api_keys.create([Scope.QUOTA_CHECK], org_id=invoice.org_id))[1]
        denied = await http.post(url, json={}, headers={"Authorization": f"Bearer {checker}"})
        assert denied.status_code == 403
    async with app_for(database) as http:
        off = await http.post(url, json={}, headers=key)
        assert (off.status_code, off.json()["code"]) == (404, "payments_off")
