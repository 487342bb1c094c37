"""A credit note on an invoice paid outside Stripe is kept as a balance that the org's next
invoices draw, on both databases: a `credit_applied` line takes it off what they come to,
what is left carries on, a voided invoice gives its draw back to its correction, and
verify holds; the card is charged only what is left to pay."""

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
import stripe
from sqlalchemy import update

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.credit_notes.rules import RefundStatus
from billing_kernel.db.database import Database
from billing_kernel.db.tables import credit_grants
from billing_kernel.invoices.rules import LineKind, StoredInvoice
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock, make_kernel, new_id
from tests.payments.conftest import PAYS
from tests.payments.stripe_server import StripeServer
from tests.payments.test_service import intents, paying, with_card
from tests.test_cli import run

pytestmark = pytest.mark.anyio

MAY, JUNE, JULY = (BillingPeriod.parse(m) for m in ("2026-05", "2026-06", "2026-07"))


async def org_paying_by_hand(kernel: Kernel, clock: Clock) -> str:
    """An active org on Starter from May (49.00 a month), May's invoice paid by bank
    transfer, marked by hand."""
    org_id = new_id()
    clock.now = MAY.start
    await kernel.orgs.create(org_id, plan_slug="starter", name="Acme Inc.")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.now = MAY.end + timedelta(days=2)
    may = await kernel.invoices.close(org_id, MAY)
    assert may is not None
    await kernel.invoices.mark_paid(may.invoice_id)
    return org_id


async def closed(kernel: Kernel, clock: Clock, org_id: str, period: BillingPeriod) -> StoredInvoice:
    """The org's invoice for `period`, made two days after it ends."""
    clock.now = period.end + timedelta(days=2)
    made = await kernel.invoices.close(org_id, period)
    assert made is not None
    return made


async def test_a_balance_is_drawn_by_the_next_invoices_until_it_is_spent(
    database: Database, clock: Clock
) -> None:
    kernel = make_kernel(database, clock)  # no Stripe: every invoice is paid by hand
    org_id = await org_paying_by_hand(kernel, clock)
    [may] = await kernel.invoices.list_invoices(org_id)
    note = await kernel.credit_notes.issue(may.number, "six weeks of outage")  # all of it
    assert (note.status, note.amount, note.payment_id) == (
        RefundStatus.BALANCE,
        Decimal("49.00"),
        None,
    )
    assert await kernel.credits.balance(org_id) == {"USD": Decimal("49.00")}
    assert await kernel.credit_notes.refund_due() == []  # nothing to refund: it is kept
    june = await closed(kernel, clock, org_id, JUNE)
    assert [(line.kind, line.amount) for line in june.lines] == [
        (LineKind.BASE_FEE.value, Decimal("49.00")),
        (LineKind.CREDIT_APPLIED.value, Decimal("-49.00")),
    ]
    assert june.lines[-1].formula == "49.00 of the 49.00 held → -49.00"
    assert (june.subtotal, june.total) == (Decimal("49.00"), Decimal("0.00"))
    assert await kernel.credits.balance(org_id) == {}
    july = await closed(kernel, clock, org_id, JULY)
    assert (july.total, [line.kind for line in july.lines]) == (
        Decimal("49.00"),
        [LineKind.BASE_FEE.value],
    )
    assert await kernel.invoices.verify() == []
    assert await kernel.credit_notes.verify() == []


async def test_what_an_invoice_does_not_use_carries_on_and_a_void_gives_it_back(
    database: Database, clock: Clock
) -> None:
    kernel = make_kernel(database, clock)
    org_id = await org_paying_by_hand(kernel, clock)
    [may] = await kernel.invoices.list_invoices(org_id)
    await kernel.credit_notes.issue(may.number, "part", [(1, Decimal("30.00"))])
    await kernel.credit_notes.issue(may.number, "more", [(1, Decimal("19.00"))])
    assert await kernel.credits.balance(org_id) == {"USD": Decimal("49.00")}
    june = await closed(kernel, clock, org_id, JUNE)
    assert june.total == Decimal("0.00")
    # June is voided: what it drew is given back, and its correction draws it again.
    corrected = await kernel.invoices.void(june.invoice_id, "wrong seats")
    assert (corrected.total, corrected.lines[-1].amount) == (Decimal("0.00"), Decimal("-49.00"))
    assert await kernel.credits.balance(org_id) == {}
    assert await kernel.invoices.verify() == []
    async with database.transaction() as conn:  # what a bad hand in the database would do
        await conn.execute(update(credit_grants).values(remaining=Decimal("5.00")))
    broken = await kernel.invoices.verify()
    assert len(broken) == 2
    assert all("left; " in said for said in broken)
    said = await asyncio.to_thread(run, str(database.url), "invoices", "verify")
    assert (said.returncode, said.stderr.strip()) == (1, "error: 2 difference(s)")


async def test_the_card_is_charged_only_what_the_balance_leaves(
    database: Database, clock: Clock, server: StripeServer, stripe_client: stripe.StripeClient
) -> None:
    kernel = paying(database, clock, server)
    org_id = await org_paying_by_hand(kernel, clock)
    [may] = await kernel.invoices.list_invoices(org_id)
    await kernel.credit_notes.issue(may.number, "goodwill", [(1, Decimal("10.00"))])
    await with_card(kernel, stripe_client, org_id, PAYS)
    june = await closed(kernel, clock, org_id, JUNE)
    assert june.total == Decimal("39.00")
    [payment] = await kernel.payments.collect_due()
    assert payment.amount == Decimal("39.00")
    [intent] = intents(stripe_client)
    assert intent.amount == 3900
    # June, paid by card, is credited back in full: its charge, refunded; the balance it
    # drew is not money Stripe holds, so no more than the 39.00 goes back to the card.
    note = await kernel.credit_notes.issue(june.invoice_id, "all of June")
    assert (note.amount, note.status) == (Decimal("39.00"), RefundStatus.PENDING)
    [refunded] = await kernel.credit_notes.refund_due()
    assert refunded.status is RefundStatus.REFUNDED
    assert await kernel.payments.verify() == []
    assert await kernel.invoices.verify() == []
    assert await kernel.credit_notes.verify() == []
