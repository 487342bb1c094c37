"""Credit notes on invoices paid through a Stripe-compatible server, on both databases: a
paid invoice corrected, never voided; each note's money given back once, to the cent, also
when the worker dies after Stripe refunded; never more than was billed, also when two notes
race; verify and reconcile agree."""

import asyncio
from decimal import Decimal

import pytest
import stripe
from sqlalchemy import update

from billing_kernel.credit_notes.rules import RefundStatus
from billing_kernel.credit_notes.service import KEY_LAPSES
from billing_kernel.db.database import Database
from billing_kernel.db.tables import credit_notes, invoices
from billing_kernel.errors import (
    InvalidInput,
    InvoiceNotFound,
    InvoiceNotOpen,
    NothingToCredit,
    NotRefundable,
)
from billing_kernel.invoices.rules import StoredInvoice
from billing_kernel.kernel import Kernel
from billing_kernel.payments.gateway import StripeGateway
from tests.conftest import Clock, make_kernel
from tests.payments.conftest import PAYS
from tests.payments.stripe_server import TEST_KEY, StripeServer
from tests.payments.test_service import MAY, invoiced, paying, with_card
from tests.test_cli import run

pytestmark = pytest.mark.anyio


async def paid(kernel: Kernel, clock: Clock, client: stripe.StripeClient) -> StoredInvoice:
    """May's invoice (49.00 and 3 runs over at 0.25: 49.75), paid by card through Stripe."""
    invoice = await invoiced(kernel, clock)
    await with_card(kernel, client, invoice.org_id, PAYS)
    [payment] = await kernel.payments.collect_due()
    assert payment.status.value == "succeeded"
    return await kernel.invoices.get(invoice.invoice_id)


def refunds(client: stripe.StripeClient) -> list[stripe.Refund]:
    return list(client.v1.refunds.list(params={"limit": 100}).data)


async def test_a_paid_invoice_is_credited_by_line_and_refunded_once_to_the_cent(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    fee, runs = invoice.lines[0], invoice.lines[1]
    assert (fee.amount, runs.amount) == (Decimal("49.00"), Decimal("0.75"))
    note = await kernel.credit_notes.issue(
        invoice.number,
        "runs lost in the outage",
        [(runs.number, None), (fee.number, Decimal("9.99"))],
    )
    assert (note.number, note.amount, note.status, note.payment_id) == (
        "CN-000001",
        Decimal("10.74"),
        RefundStatus.PENDING,
        invoice.paid_by,
    )
    assert [(line.number, line.amount) for line in note.lines] == [
        (fee.number, Decimal("9.99")),
        (runs.number, Decimal("0.75")),
    ]
    after = await kernel.invoices.get(invoice.invoice_id)
    assert (after.status, after.credited) == ("paid", Decimal("10.74"))  # never voided
    assert refunds(stripe_client) == []  # the worker refunds, not the request
    [done] = await kernel.credit_notes.refund_due()
    assert (done.credit_note_id, done.status) == (note.credit_note_id, RefundStatus.REFUNDED)
    [refund] = refunds(stripe_client)
    assert (refund.id, refund.amount, refund.currency) == (done.stripe_refund_id, 1074, "usd")
    assert refund.to_dict()["metadata"] == {
        "credit_note_id": note.credit_note_id,
        "invoice_id": invoice.invoice_id,
    }
    assert await kernel.credit_notes.refund_due() == []  # refunded: nothing more
    rest = await kernel.credit_notes.issue(invoice.invoice_id, "goodwill")  # all that is left
    assert (rest.number, rest.amount) == ("CN-000002", Decimal("39.01"))
    await kernel.credit_notes.refund_due()
    assert sorted(r.amount for r in refunds(stripe_client)) == [1074, 3901]
    with pytest.raises(NothingToCredit, match="credited in full already"):
        await kernel.credit_notes.issue(invoice.invoice_id, "again")
    assert (await kernel.invoices.get(invoice.invoice_id)).credited == invoice.total
    assert await kernel.credit_notes.verify() == []
    assert await kernel.credit_notes.reconcile(invoice.issued_at) == ([], [])


async def test_a_credit_note_is_refused_where_it_would_give_back_what_it_should_not(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    with pytest.raises(InvalidInput, match=r"line 1 has 49\.00 left to credit, not 50") as over:
        await kernel.credit_notes.issue(invoice.invoice_id, "too much", [(1, Decimal(50))])
    assert over.value.details["field"] == "lines.1"
    with pytest.raises(InvalidInput, match="a credit note needs a reason"):
        await kernel.credit_notes.issue(invoice.invoice_id, "  ")
    other = await invoiced(kernel, clock)
    with pytest.raises(InvoiceNotOpen, match="is open: void it"):
        await kernel.credit_notes.issue(other.invoice_id, "open")
    with pytest.raises(InvoiceNotFound):  # another org's, asked for by this org
        await kernel.credit_notes.issue(invoice.invoice_id, "x", org_id=other.org_id)
    off = make_kernel(database, clock)  # a deployment without Stripe
    with pytest.raises(NotRefundable, match="has no Stripe key to refund it with"):
        await off.credit_notes.issue(invoice.invoice_id, "no Stripe")
    assert await kernel.credit_notes.latest(None) == []
    assert (await kernel.invoices.get(invoice.invoice_id)).credited == 0
    assert refunds(stripe_client) == []


async def test_two_notes_racing_on_one_invoice_never_credit_more_than_it_billed(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    racing = [
        paying(database, clock, server).credit_notes.issue(invoice.invoice_id, f"race {n}")
        for n in range(4)
    ]
    results = await asyncio.gather(*racing, return_exceptions=True)
    made = [r for r in results if not isinstance(r, BaseException)]
    assert len(made) == 1, results
    assert all(isinstance(r, NothingToCredit) for r in results if r not in made)
    assert (await kernel.invoices.get(invoice.invoice_id)).credited == Decimal("49.75")
    assert [n.number for n in await kernel.credit_notes.latest(None)] == ["CN-000001"]
    assert await kernel.credit_notes.verify() == []


async def test_a_worker_that_died_after_stripe_refunded_refunds_nothing_twice(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    """Stripe made the refund and the worker died before it recorded it: the next round
    asks with the same key and gets the same refund; a day later, past the key's life, it
    finds the refund by its metadata instead of making a second."""
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    note = await kernel.credit_notes.issue(invoice.invoice_id, "outage", [(1, Decimal("5.00"))])
    payment = (await kernel.payments.attempts(invoice.invoice_id))[0]
    gateway = StripeGateway(TEST_KEY, server.base)
    try:
        for _ in range(2):  # what dying workers asked, unrecorded
            await gateway.refund(
                payment_intent_id=str(payment.stripe_payment_intent_id),
                amount=note.amount,
                currency=note.currency,
                credit_note_id=note.credit_note_id,
                invoice_id=invoice.invoice_id,
            )
    finally:
        await gateway.aclose()
    assert len(refunds(stripe_client)) == 1  # the key replayed
    [done] = await kernel.credit_notes.refund_due()
    assert done.stripe_refund_id == refunds(stripe_client)[0].id
    assert len(refunds(stripe_client)) == 1
    # Past the key's life: a pending note is looked for at Stripe first.
    later = await kernel.credit_notes.issue(invoice.invoice_id, "more", [(1, Decimal("1.00"))])
    gateway = StripeGateway(TEST_KEY, server.base)
    try:
        await gateway.refund(
            payment_intent_id=str(payment.stripe_payment_intent_id),
            amount=later.amount,
            currency=later.currency,
            credit_note_id=later.credit_note_id,
            invoice_id=invoice.invoice_id,
        )
    finally:
        await gateway.aclose()
    server.forget_keys()
    clock.advance(seconds=KEY_LAPSES.total_seconds() + 1)
    [found] = await kernel.credit_notes.refund_due()
    assert (found.number, found.status) == ("CN-000002", RefundStatus.REFUNDED)
    assert len(refunds(stripe_client)) == 2
    assert await kernel.credit_notes.verify() == []


async def test_a_refund_stripe_refuses_fails_with_its_words_and_verify_names_a_bad_record(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    payment = (await kernel.payments.attempts(invoice.invoice_id))[0]
    stripe_client.v1.refunds.create(  # refunded in Stripe's dashboard, by hand
        params={"payment_intent": str(payment.stripe_payment_intent_id)}
    )
    note = await kernel.credit_notes.issue(invoice.invoice_id, "outage", [(1, Decimal("5.00"))])
    [failed] = await kernel.credit_notes.refund_due()
    assert (failed.credit_note_id, failed.status) == (note.credit_note_id, RefundStatus.FAILED)
    assert failed.failure_message
    assert await kernel.credit_notes.refund_due() == []  # for the operator, not retried
    url = str(database.url)
    listed = await asyncio.to_thread(run, url, "credit-notes", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.startswith(f"CN-000001  {failed.created_at:%Y-%m-%d %H:%M}  {invoice.org_id}")
    assert "USD         5.00  refund failed  outage" in line
    async with database.transaction() as conn:  # what a bad hand in the database would do
        await conn.execute(
            update(invoices)
            .where(invoices.c.invoice_id == invoice.invoice_id)
            .values(credited=Decimal(0))
        )
        await conn.execute(update(credit_notes).values(status="refunded", stripe_refund_id=None))
    assert await kernel.credit_notes.verify() == [
        "CN-000001 is refunded without a Stripe refund",
        f"{invoice.number}: credited 0.00 recorded, its credit notes come to 5.00",
    ]
    verified = await asyncio.to_thread(run, url, "invoices", "verify")
    assert (verified.returncode, verified.stderr.strip()) == (1, "error: 2 difference(s)")


async def test_the_operator_issues_a_note_from_the_command_line(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    invoice = await paid(kernel, clock, stripe_client)
    url = str(database.url)
    env = {"BILLING_STRIPE_API_KEY": TEST_KEY, "BILLING_STRIPE_API_BASE": server.base}
    issued = await asyncio.to_thread(
        run, url, "credit-notes", "issue", invoice.number, "--reason", "outage",
        "--line", "2", "--line", "1=1.25", env=env,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    head, first, second = issued.stdout.splitlines()
    assert head.startswith("CN-000001")
    assert "USD         2.00  refund pending  outage" in head
    assert first.split()[:3] == ["line", "1", "1.25"]
    assert second.split()[:3] == ["line", "2", "0.75"]
    bad = await asyncio.to_thread(
        run, url, "credit-notes", "issue", invoice.number, "--reason", "x", "--line", "a", env=env
    )
    assert (bad.returncode, bad.stderr.strip()) == (
        1,
        "error: --line is NUMBER or NUMBER=AMOUNT, not 'a'",
    )
    assert (await kernel.invoices.get(invoice.invoice_id)).credited == Decimal("2.00")
    clock.advance(days=1)
    assert [n.status for n in await kernel.credit_notes.refund_due()] == [RefundStatus.REFUNDED]
    reconciled = await asyncio.to_thread(
        run, url, "payments", "reconcile", "--since", f"{MAY.start:%Y-%m-%d}", env=env
    )
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
