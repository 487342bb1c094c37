"""Collecting finalized invoices through a Stripe-compatible server, on both databases:
each invoice charged once to the cent, also when two workers race or one dies after Stripe
answered; a decline makes the org past due; a report of an outcome, repeated or late, moves
nothing back."""

import asyncio
import subprocess
from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
from sqlalchemy import update

from billing_kernel.background import delivery_worker
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import invoices
from billing_kernel.events.rules import EventType
from billing_kernel.invoices.rules import StoredInvoice
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.payments.gateway import StripeUnavailable
from billing_kernel.payments.rules import Charge, InvoiceEffect, PaymentStatus
from billing_kernel.payments.service import UNFINISHED_AFTER
from tests.client.faulty_proxy import FaultyProxy
from tests.conftest import Clock, make_kernel, new_id
from tests.notifications.test_service import until
from tests.payments.conftest import (
    DECLINES_WHEN_CHARGED,
    PAYS,
    WEBHOOK_SECRET,
    complete_checkout,
    save_card,
    signed,
)
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.receivers import smtp_server
from tests.test_cli import run

pytestmark = pytest.mark.anyio

MAY = BillingPeriod.parse("2026-05")


def paying(database: Database, clock: Clock, server: StripeServer, **settings: object) -> Kernel:
    """A kernel that collects through the test's Stripe (and takes its webhooks)."""
    return make_kernel(
        database,
        clock,
        stripe_api_key=TEST_KEY,
        stripe_api_base=server.base,
        stripe_webhook_secret=WEBHOOK_SECRET,
        **settings,
    )


async def card_through_checkout(
    kernel: Kernel, server: StripeServer, client: stripe.StripeClient, org_id: str, number: str
) -> str:
    """The org's owner adds a card on Stripe's Checkout page; Stripe tells the kernel."""
    url = await kernel.payments.card_setup_url(org_id, "https://billing.example/app/billing")
    body, headers = signed(complete_checkout(server, client, url, number))
    return await kernel.payments.receive(body, headers["Stripe-Signature"])


async def invoiced(kernel: Kernel, clock: Clock, runs: int = 203) -> StoredInvoice:
    """An active org on Starter for May, with `runs` playbook runs, its May invoice made."""
    org_id = new_id()
    clock.now = MAY.start
    await kernel.orgs.create(org_id, plan_slug="starter", name="Acme Inc.")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.advance(days=3)
    await kernel.usage.record(org_id, "playbook_runs", runs, idempotency_key="runs")
    clock.now = MAY.end + timedelta(days=2)
    invoice = await kernel.invoices.close(org_id, MAY)
    assert invoice is not None
    return invoice


async def with_card(kernel: Kernel, client: stripe.StripeClient, org_id: str, number: str) -> None:
    customer_id = await kernel.payments.customer(org_id)
    assert customer_id is not None
    save_card(client, customer_id, number)


def intents(client: stripe.StripeClient) -> list[stripe.PaymentIntent]:
    return list(client.v1.payment_intents.list(params={"limit": 100}).data)


async def told(kernel: Kernel, org_id: str | None) -> list[str]:
    return [
        str(event.event_type)
        for _, event in await kernel.events.events(org_id=org_id)
        if str(event.event_type).startswith("payment.")
    ]


async def test_a_finalized_invoice_is_collected_once_to_the_cent(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    assert invoice.total == Decimal("49.75")  # 49.00 and 3 runs over at 0.25
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    [payment] = await kernel.payments.collect_due()
    assert (payment.status, payment.amount, payment.attempt) == (
        PaymentStatus.SUCCEEDED,
        Decimal("49.75"),
        1,
    )
    [intent] = intents(stripe_client)
    assert (intent.amount, intent.currency, intent.status) == (4975, "usd", "succeeded")
    assert intent.id == payment.stripe_payment_intent_id
    paid = await kernel.invoices.get(invoice.invoice_id)
    assert (paid.status, paid.paid_by) == ("paid", payment.payment_id)
    assert await kernel.payments.collect_due() == []  # paid: nothing more
    assert len(intents(stripe_client)) == 1
    assert await told(kernel, invoice.org_id) == ["payment.succeeded"]
    customer = stripe_client.v1.customers.retrieve(
        await kernel.payments.customer(invoice.org_id) or ""
    )
    assert (customer.name, customer.metadata.to_dict()) == (
        "Acme Inc.",
        {"org_id": invoice.org_id},
    )


async def test_an_org_without_a_card_waits_until_its_owner_adds_one_through_checkout(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    waiting = await invoiced(kernel, clock)
    assert await kernel.payments.collect_due() == []
    assert await kernel.payments.collect_due() == []
    assert await kernel.payments.attempts(waiting.invoice_id) == []
    assert await told(kernel, waiting.org_id) == ["payment.card_needed"]  # once
    assert await kernel.payments.card(waiting.org_id) is None
    assert intents(stripe_client) == []
    url = await kernel.payments.card_setup_url(waiting.org_id, "https://b.example/app/billing")
    session = stripe_client.v1.checkout.sessions.retrieve(url.rsplit("/", 1)[1])
    assert (session.mode, session.success_url, session.cancel_url) == (
        "setup",
        "https://b.example/app/billing?card=added",
        "https://b.example/app/billing?card=canceled",
    )
    event = complete_checkout(server, stripe_client, url, PAYS)
    for outcome in ("card_added", "duplicate"):
        body, headers = signed(event)
        assert await kernel.payments.receive(body, headers["Stripe-Signature"]) == outcome
    card = await kernel.payments.card(waiting.org_id)
    assert card is not None
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2031)
    customer = stripe_client.v1.customers.retrieve(str(session.customer))
    assert customer.invoice_settings.default_payment_method == card.payment_method_id
    assert [p.invoice_id for p in await kernel.payments.collect_due()] == [waiting.invoice_id]


async def test_a_decline_makes_the_org_past_due_and_tells_it_once(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, stripe_client, invoice.org_id, DECLINES_WHEN_CHARGED)
    [payment] = await kernel.payments.collect_due()
    assert (payment.status, payment.failure_code, payment.failure_message) == (
        PaymentStatus.FAILED,
        "card_declined",
        "Your card was declined.",
    )
    state = await kernel.subscriptions.billing_state(invoice.org_id)
    assert state.status is BillingStatus.PAST_DUE
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "open"
    assert await kernel.payments.collect_due() == []  # a retry is the dunning schedule's
    assert len(intents(stripe_client)) == 1
    [(_, event)] = [
        e for e in await kernel.events.events(org_id=invoice.org_id)
        if e[1].event_type is EventType.PAYMENT_FAILED
    ]  # fmt: skip
    assert event.data["failure_code"] == "card_declined"
    assert event.data["amount"] == "49.75"


async def test_two_workers_racing_make_one_customer_and_one_charge(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    made = await asyncio.gather(*(kernel.payments.customer(invoice.org_id) for _ in range(4)))
    assert len({customer for customer in made if customer is not None}) == 1
    assert len(stripe_client.v1.customers.list().data) == 1
    save_card(stripe_client, next(c for c in made if c is not None), PAYS)
    workers = [paying(database, clock, server) for _ in range(3)]
    await asyncio.gather(*(worker.payments.collect_due() for worker in workers))
    assert len(intents(stripe_client)) == 1
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "paid"


async def dies_after_stripe_answered(worker: Kernel, invoice: StoredInvoice) -> None:
    """A worker collects the invoice and is killed once Stripe has answered, before it
    records the answer."""
    answered = asyncio.Event()

    async def killed(payment_id: str, charge: Charge) -> object:
        answered.set()
        raise asyncio.CancelledError

    worker.payments.settle = killed  # type: ignore[method-assign]
    with pytest.raises(asyncio.CancelledError):
        await worker.payments.collect(invoice.invoice_id)
    assert answered.is_set()


async def test_a_worker_that_died_after_stripe_charged_charges_nothing_twice(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """The attempt was written and Stripe charged, but the answer never reached the
    database: the next round reads what Stripe made for the attempt and settles it."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    await dies_after_stripe_answered(paying(database, clock, server), invoice)
    [pending] = await kernel.payments.attempts(invoice.invoice_id)
    assert pending.status is PaymentStatus.PENDING
    assert await kernel.payments.collect_due() == []  # not yet: it may still be answered
    clock.advance(seconds=UNFINISHED_AFTER.total_seconds() + 1)
    [settled] = await kernel.payments.collect_due()
    assert (settled.payment_id, settled.status) == (pending.payment_id, PaymentStatus.SUCCEEDED)
    assert len(intents(stripe_client)) == 1  # charged once
    assert (await kernel.invoices.get(invoice.invoice_id)).paid_by == pending.payment_id


async def test_reports_repeated_or_late_move_nothing_back(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """A success reported again, then a failure that arrives after it, leave the invoice
    paid, the org active, and one event; a success for an invoice voided meanwhile is money
    to give back, told to the operator."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    [payment] = await kernel.payments.collect_due()
    succeeded = Charge(
        payment.stripe_payment_intent_id, PaymentStatus.SUCCEEDED, payment.amount, "USD"
    )
    failed = Charge(
        payment.stripe_payment_intent_id,
        PaymentStatus.FAILED,
        payment.amount,
        "USD",
        failure="Your card was declined.",
        failure_code="card_declined",
    )
    for report in (succeeded, failed, succeeded):
        assert (await kernel.payments.settle(payment.payment_id, report)).effect is (
            InvoiceEffect.NONE
        )
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "paid"
    state = await kernel.subscriptions.billing_state(invoice.org_id)
    assert state.status is BillingStatus.ACTIVE
    assert await told(kernel, invoice.org_id) == ["payment.succeeded"]

    other = await invoiced(kernel, clock)
    await with_card(kernel, stripe_client, other.org_id, PAYS)
    await dies_after_stripe_answered(paying(database, clock, server), other)
    await kernel.invoices.void(other.number, "wrong plan")  # before the answer is recorded
    clock.advance(seconds=UNFINISHED_AFTER.total_seconds() + 1)
    await kernel.payments.collect_due()
    [attempt] = await kernel.payments.attempts(other.invoice_id)
    assert attempt.status is PaymentStatus.SUCCEEDED
    assert (await kernel.invoices.get(other.invoice_id)).status == "void"
    refunds = [
        event for _, event in await kernel.events.events(org_id=None)
        if event.event_type is EventType.PAYMENT_REFUND_DUE
    ]  # fmt: skip
    assert [(e.org_id, e.data["invoice_id"], e.data["amount"]) for e in refunds] == [
        (other.org_id, other.invoice_id, "49.75")
    ]
    shown = await kernel.events.events(org_id=other.org_id, operators_too=False)
    assert EventType.PAYMENT_REFUND_DUE not in {e.event_type for _, e in shown}


async def test_a_declined_card_is_retried_on_schedule_blocked_after_grace_and_a_new_card_pays(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """The issue's path: a card that attaches, then declines when charged → past due →
    retried on the dunning days (1, 3, 5, 7) → blocked once the grace (7 days) has passed →
    a new card through Checkout is tried at once → paid → active."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    assert (
        await card_through_checkout(
            kernel, server, stripe_client, invoice.org_id, DECLINES_WHEN_CHARGED
        )
        == "card_added"
    )
    [first] = await kernel.payments.collect_due()
    assert first.status is PaymentStatus.FAILED
    for days, attempts in ((0.5, 1), (1, 2), (2, 2), (3, 3), (5, 4), (7, 5), (30, 5)):
        clock.now = first.updated_at + timedelta(days=days)
        await kernel.payments.collect_due()
        tried = await kernel.payments.attempts(invoice.invoice_id)
        assert (len(tried), tried[-1].status) == (attempts, PaymentStatus.FAILED), days
    assert len(intents(stripe_client)) == 5  # one per attempt: a retry is a new charge
    assert len({a.payment_id for a in tried}) == 5
    assert (await kernel.quota.check(invoice.org_id, "playbook_runs")).reason.value == (
        "past_due"  # blocked: more than the 7 days' grace since it became past due
    )
    assert await card_through_checkout(kernel, server, stripe_client, invoice.org_id, PAYS) == (
        "card_added"
    )
    [paid] = await kernel.payments.collect_due()
    assert (paid.attempt, paid.status) == (6, PaymentStatus.SUCCEEDED)
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "paid"
    state = await kernel.subscriptions.billing_state(invoice.org_id)
    assert state.status is BillingStatus.ACTIVE
    assert (await kernel.quota.check(invoice.org_id, "playbook_runs")).allowed
    assert await told(kernel, invoice.org_id) == ["payment.succeeded"] + ["payment.failed"] * 5


async def test_the_operator_lists_attempts_and_sees_them_under_the_invoice(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await card_through_checkout(
        kernel, server, stripe_client, invoice.org_id, DECLINES_WHEN_CHARGED
    )
    [failed] = await kernel.payments.collect_due()
    url = str(database.url)
    listed = await asyncio.to_thread(run, url, "payments", "list", "--org", invoice.org_id)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.split()[2:8] == [invoice.org_id, invoice.invoice_id, "#1", "failed", "USD", "49.75"]
    assert line.endswith("Your card was declined.")
    shown = await asyncio.to_thread(run, url, "invoices", "show", invoice.number)
    assert shown.stdout.splitlines()[-1].startswith(
        f"payment    {failed.updated_at:%Y-%m-%d %H:%M}  #1 failed"
    )
    nothing = await asyncio.to_thread(run, url, "payments", "list", "--org", "nobody")
    assert nothing.stdout == "none\n"


async def test_a_trial_with_a_card_becomes_active_when_it_ends_and_one_without_stays(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    with_card_org, without = new_id(), new_id()
    for org_id in (with_card_org, without):
        await kernel.orgs.create(org_id, plan_slug="starter")
    state = await kernel.subscriptions.billing_state(with_card_org)
    assert state.status is BillingStatus.TRIAL
    assert state.trial_ends_at is not None
    await card_through_checkout(kernel, server, stripe_client, with_card_org, PAYS)
    await kernel.payments.collect_due()
    assert (await kernel.subscriptions.billing_state(with_card_org)).status is (
        BillingStatus.TRIAL  # not before its end
    )
    clock.now = state.trial_ends_at
    await kernel.payments.collect_due()
    converted = await kernel.subscriptions.billing_state(with_card_org)
    assert (converted.status, converted.status_since) == (BillingStatus.ACTIVE, clock.now)
    assert (await kernel.subscriptions.billing_state(without)).status is BillingStatus.TRIAL


async def test_a_failed_payment_is_emailed_to_the_owners_with_stripes_reason(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    with smtp_server() as (url, mailbox):
        kernel = paying(database, clock, server, smtp_url=url, email_from="billing@example.com")
        invoice = await invoiced(kernel, clock)
        await kernel.members.add(
            invoice.org_id, new_id("u"), MemberRole.OWNER, email="owner@example.com"
        )
        await card_through_checkout(
            kernel, server, stripe_client, invoice.org_id, DECLINES_WHEN_CHARGED
        )
        await kernel.payments.collect_due()
        worker = delivery_worker(kernel)

        async def sent() -> bool:  # and the runs' crossing of their allowance in May
            return len(mailbox.messages) == 2

        await until(sent, worker)
        [(_, recipients, message)] = [
            m for m in mailbox.messages if "payment" in str(m[2]["Subject"])
        ]
        assert recipients == ["owner@example.com"]
        assert message["Subject"] == "Acme Inc.: payment of USD 49.75 failed"
        plain = message.get_body(("plain",))
        assert plain is not None
        assert f"invoice {invoice.number} failed: Your card was declined." in plain.get_content()


async def test_reconciling_finds_a_missed_webhook_and_repair_applies_it(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """Stripe charged, the worker died, and the webhook never came: `payments reconcile`
    says so (exit 1) and `--repair` pays the invoice; then they agree."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    await dies_after_stripe_answered(paying(database, clock, server), invoice)
    env = {"BILLING_STRIPE_API_KEY": TEST_KEY, "BILLING_STRIPE_API_BASE": server.base}
    url, since = str(database.url), ("--since", f"{MAY.start:%Y-%m-%d}")

    def reconcile(*more: str) -> subprocess.CompletedProcess[str]:
        return run(url, "payments", "reconcile", *since, *more, env=env)

    found = await asyncio.to_thread(reconcile)
    assert found.returncode == 1
    [said] = found.stdout.splitlines()
    assert "Stripe has it succeeded, the kernel pending: a webhook was missed" in said
    assert found.stderr.strip() == "error: 1 difference(s)"
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "open"
    mended = await asyncio.to_thread(reconcile, "--repair")
    assert mended.returncode == 0, mended.stderr
    assert mended.stdout.startswith("repaired  pay_")
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "paid"
    agreed = await asyncio.to_thread(reconcile)
    assert (agreed.returncode, agreed.stdout.strip()) == (
        0,
        f"the kernel's payments since {MAY.start:%Y-%m-%d} agree with Stripe's",
    )
    assert len(intents(stripe_client)) == 1
    wrong = await asyncio.to_thread(run, url, "payments", "reconcile", "--since", "May", env=env)
    assert (wrong.returncode, wrong.stderr.strip()) == (
        1,
        "error: --since is a day, YYYY-MM-DD, not 'May'",
    )


async def test_an_answer_lost_on_the_way_back_from_stripe_charges_once(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """Stripe made and confirmed the PaymentIntent, but the connection was cut before its
    answer arrived: the attempt waits, and the next round settles what Stripe made."""
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, stripe_client, invoice.org_id, PAYS)
    proxy = FaultyProxy(server.base, drop_once="POST /v1/payment_intents")
    try:
        cut = make_kernel(
            database,
            clock,
            stripe_api_key=TEST_KEY,
            stripe_api_base=proxy.url,
            stripe_webhook_secret=WEBHOOK_SECRET,
        )
        with pytest.raises(StripeUnavailable, match="could not be reached"):
            await cut.payments.collect(invoice.invoice_id)
        assert proxy.seen["dropped"] == 1
        [waiting] = await kernel.payments.attempts(invoice.invoice_id)
        assert waiting.status is PaymentStatus.PENDING
        assert len(intents(stripe_client)) == 1  # made at Stripe all the same
        clock.advance(seconds=UNFINISHED_AFTER.total_seconds() + 1)
        [settled] = await cut.payments.collect_due()
    finally:
        proxy.close()
    assert (settled.payment_id, settled.status) == (waiting.payment_id, PaymentStatus.SUCCEEDED)
    assert len(intents(stripe_client)) == 1  # charged once
    assert (await kernel.invoices.get(invoice.invoice_id)).status == "paid"


async def test_verify_holds_after_collection_and_names_a_record_made_untrue(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await invoiced(kernel, clock)
    await card_through_checkout(
        kernel, server, stripe_client, invoice.org_id, DECLINES_WHEN_CHARGED
    )
    [failed] = await kernel.payments.collect_due()
    await card_through_checkout(kernel, server, stripe_client, invoice.org_id, PAYS)
    [paid] = await kernel.payments.collect_due()
    assert await kernel.payments.verify() == []
    verified = await asyncio.to_thread(run, str(database.url), "payments", "verify")
    assert (verified.returncode, verified.stdout) == (0, "every payment agrees with its invoice\n")
    async with database.transaction() as conn:  # what a bad hand in the database would do
        await conn.execute(
            update(invoices)
            .where(invoices.c.invoice_id == invoice.invoice_id)
            .values(paid_by=failed.payment_id)
        )
    assert await kernel.payments.verify() == [
        f"{invoice.number} is paid by {failed.payment_id}, which is failed",
        f"{paid.payment_id} took USD 49.75 for {invoice.invoice_id}, which it did not pay, "
        "and no refund was told",
    ]
    broken = await asyncio.to_thread(run, str(database.url), "payments", "verify")
    assert (broken.returncode, broken.stderr.strip()) == (1, "error: 2 disagreement(s)")


async def test_owners_are_emailed_once_that_an_invoice_waits_for_a_card(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    with smtp_server() as (url, mailbox):
        kernel = paying(database, clock, server, smtp_url=url, email_from="billing@example.com")
        invoice = await invoiced(kernel, clock, runs=100)  # within what Starter includes
        await kernel.members.add(
            invoice.org_id, new_id("u"), MemberRole.OWNER, email="owner@example.com"
        )
        for _ in range(2):
            assert await kernel.payments.collect_due() == []
        worker = delivery_worker(kernel)

        async def sent() -> bool:
            return len(mailbox.messages) == 1

        await until(sent, worker)
        await worker.run_once()
        [(_, recipients, message)] = mailbox.messages
        assert recipients == ["owner@example.com"]
        assert message["Subject"] == f"Acme Inc.: add a card to pay invoice {invoice.number}"
