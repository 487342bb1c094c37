"""Collecting finalized invoices through Stripe, exactly once.

An attempt is written `pending` before Stripe is asked, and asked with a key derived from
the invoice and the attempt's number: if the worker dies before it records the answer, the
next round finds the attempt pending, reads what Stripe made for it (by its metadata) and
asks again, with the same key, only if Stripe has nothing. Whatever reports an attempt's
outcome (the worker's own answer, a webhook, in any order, any number of times) moves it
forward only (`rules.moved`), in a statement that checks the status it moves from, and does
to its invoice and org what `rules.invoice_effect` says: paid, past due, or money to give
back. Stripe is only ever called outside a transaction."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import (
    InvalidSignature,
    InvoiceNotOpen,
    PaymentsOff,
    PaymentUnderWay,
)
from billing_kernel.events.rules import EventType
from billing_kernel.events.service import EventLog
from billing_kernel.invoices.rules import StoredInvoice
from billing_kernel.invoices.service import InvoiceService
from billing_kernel.members.service import MemberService
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.orgs.service import OrgService
from billing_kernel.payments.checks import (
    Difference,
    differences,
    payment_disagreements,
)
from billing_kernel.payments.gateway import (
    BadSignature,
    StripeGateway,
    StripeRefused,
    StripeUnavailable,
    charge_of,
    charge_of_checkout,
)
from billing_kernel.payments.repository import PaymentRepository
from billing_kernel.payments.rules import (
    PAY_NOW_LIFETIME,
    Card,
    Charge,
    InvoiceEffect,
    InvoiceState,
    Outcome,
    Payment,
    PaymentStatus,
    card_needed_event,
    dunning_attempts,
    invoice_effect,
    moved,
    open_pay_now,
    pay_now_offered,
    payment_event,
    retry_due,
)
from billing_kernel.subscriptions.service.lifecycle import SubscriptionService

logger = logging.getLogger(__name__)

CLAIM_STALE = timedelta(minutes=5)
"""A claim on making an org's customer older than this, with no customer, was left by a
worker that died: another may take it (and ask Stripe with the same key)."""

CARD_CHECK_EVERY = timedelta(hours=6)
"""How often Stripe is asked for the card of an org with none on file whose invoice waits:
a card added through Checkout, or changed at Stripe, is told by webhook at once."""

UNFINISHED_AFTER = timedelta(minutes=2)
"""An attempt still `pending` this long after it was written lost its answer."""

PAYMENT_INTENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.processing",
        "payment_intent.canceled",
    }
)
"""The Stripe events that report an attempt's outcome (the PaymentIntent as it stands)."""

PAY_NOW_EVENTS = frozenset({"checkout.session.completed", "checkout.session.expired"})
"""The Stripe events that report what a pay-now page came to (a Checkout Session in payment
mode): paid, or expired unpaid."""


@dataclass(frozen=True, slots=True)
class Settled:
    """What one report of an attempt's outcome did."""

    payment: Payment
    effect: InvoiceEffect


@dataclass(frozen=True, slots=True)
class PayNowPage:
    """An invoice's pay-now page: Stripe's URL, and the attempt it is."""

    url: str
    payment: Payment


class PaymentService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        gateway: StripeGateway | None,
        *,
        webhook_secret: str | None,
        dunning_days: tuple[int, ...] = (1, 3, 5, 7),
        invoices: InvoiceService,
        subscriptions: SubscriptionService,
        orgs: OrgService,
        members: MemberService,
        events: EventLog,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._gateway = gateway
        self._webhook_secret = webhook_secret
        self._dunning_days = dunning_days
        self._invoices = invoices
        self._subscriptions = subscriptions
        self._orgs = orgs
        self._members = members
        self._events = events

    @property
    def enabled(self) -> bool:
        """Whether the kernel collects through Stripe (it has a key)."""
        return self._gateway is not None

    def _stripe(self) -> StripeGateway:
        if self._gateway is None:
            raise RuntimeError("payments through Stripe are not configured")
        return self._gateway

    def _stripe_or_off(self) -> StripeGateway:
        if self._gateway is None:
            raise PaymentsOff(
                "this deployment does not collect through Stripe (BILLING_STRIPE_API_KEY)"
            )
        return self._gateway

    async def customer(self, org_id: str) -> str | None:
        """The org's Stripe customer id, made the first time it is needed, once: None while
        another worker is making it (ask again later). PaymentsOff without Stripe."""
        stripe = self._stripe_or_off()
        async with self._tx.begin() as unit:
            payments = PaymentRepository(unit)
            stored = await payments.customer_id(org_id)
            if stored is not None:
                return stored
            now = self._clock()
            if not await payments.claim_customer(org_id, now, now - CLAIM_STALE):
                return None
            org = await self._orgs.get(org_id, unit)
            emails = await self._members.admin_emails(org_id, unit)
        made = await stripe.create_customer(
            org_id, org.name or org_id, emails[0] if emails else None
        )
        async with self._tx.begin() as unit:
            await PaymentRepository(unit).store_customer(org_id, made, self._clock())
        return made

    async def card(self, org_id: str, uow: UnitOfWork | None = None) -> Card | None:
        """The card on file, as it was when added (brand, last four, expiry): read from the
        kernel's records, never from Stripe, so a page shows it without waiting on Stripe."""
        async with self._tx.read(uow) as unit:
            return await PaymentRepository(unit).card(org_id)

    async def card_setup_url(self, org_id: str, return_url: str) -> str:
        """Where the org's owner adds or replaces its card: a Stripe Checkout page in setup
        mode (the card number goes to Stripe, never to the kernel), returning to
        `return_url` with `?card=added` (or `?card=canceled`). The org's customer is made
        first if it has none. PaymentsOff without Stripe; StripeUnavailable when Stripe
        cannot be reached, or is making the customer in another request (try again)."""
        stripe = self._stripe_or_off()
        customer_id = await self.customer(org_id)
        if customer_id is None:
            raise StripeUnavailable("the org's Stripe customer is being made: try again")
        joiner = "&" if "?" in return_url else "?"
        return await stripe.checkout_setup(
            customer_id, f"{return_url}{joiner}card=added", f"{return_url}{joiner}card=canceled"
        )

    async def attempts(self, invoice_id: str, uow: UnitOfWork | None = None) -> list[Payment]:
        """The invoice's collection attempts, first to last."""
        async with self._tx.read(uow) as unit:
            return await PaymentRepository(unit).attempts(invoice_id)

    async def attempts_of(
        self, invoice_ids: Sequence[str], uow: UnitOfWork | None = None
    ) -> dict[str, list[Payment]]:
        """`attempts` of several invoices (those without any left out)."""
        async with self._tx.read(uow) as unit:
            return await PaymentRepository(unit).of_invoices(invoice_ids)

    async def latest(
        self, org_id: str | None, limit: int = 50, uow: UnitOfWork | None = None
    ) -> list[Payment]:
        """The org's collection attempts (or every org's), newest first."""
        async with self._tx.read(uow) as unit:
            return await PaymentRepository(unit).latest(org_id, limit)

    async def collect(self, invoice_id: str) -> Payment | None:
        """Collect an open invoice above zero from the org's card: its first attempt, a
        retry when one is due (`rules.retry_due`: the dunning schedule, or at once on a new
        card), or an attempt left pending, finished. None when there is nothing to do now:
        the invoice is not open or is zero, the last attempt succeeded or its retry is not
        due, another worker holds it, or the org has no card on file (it waits for one).
        StripeUnavailable leaves the attempt pending, to be finished with the same key."""
        async with self._tx.read() as unit:
            invoice = await self._invoices.get(invoice_id, uow=unit)
            tried = await PaymentRepository(unit).attempts(invoice_id)
        if tried and tried[-1].status is PaymentStatus.PENDING:
            return await self._finish(invoice, tried[-1])
        if invoice.status != "open" or invoice.total <= 0:
            return None
        charged = dunning_attempts(tried)  # a pay-now page left unpaid charged nothing
        if charged and charged[-1].status is not PaymentStatus.FAILED:
            return None  # succeeded, or still being decided at Stripe: a webhook settles it
        now = self._clock()
        if charged:  # a new card is one other than the card that failed, as last stored
            stored = await self.card(invoice.org_id)
            new_card = (
                stored is not None
                and stored.payment_method_id != charged[-1].stripe_payment_method_id
            )
            if not retry_due(
                charged[0].updated_at, len(charged) - 1, self._dunning_days, now, new_card=new_card
            ):
                return None  # decided from what is stored: Stripe is not asked
        customer_id = await self.customer(invoice.org_id)
        if customer_id is None:
            return None
        card = await self.card(invoice.org_id) or await self._card_at_stripe(
            invoice.org_id, customer_id
        )
        if card is None:  # it waits for a card; the owners are told once
            told = card_needed_event(
                invoice.org_id,
                invoice.invoice_id,
                invoice.number,
                invoice.total,
                invoice.currency,
                self._clock(),
            )
            await self._events.record([told])
            return None
        attempt = len(tried) + 1
        async with self._tx.begin() as unit:
            payments = PaymentRepository(unit)
            if not await payments.add_attempt(
                payment_id="pay_" + secrets.token_hex(12),
                invoice_id=invoice.invoice_id,
                org_id=invoice.org_id,
                attempt=attempt,
                amount=invoice.total,
                currency=invoice.currency,
                card_id=card.payment_method_id,
                now=now,
            ):
                return None  # another worker wrote it first: it collects
            payment = await _attempt(payments, invoice.invoice_id, attempt)
        return await self._charge(payment, customer_id, card.payment_method_id)

    async def _finish(self, invoice: StoredInvoice, payment: Payment) -> Payment | None:
        """An attempt left pending by a worker that died (or lost Stripe's answer): what
        Stripe made for it, settled; else, the invoice still open, asked again with the
        same key (once there is a card); else closed as not charged. A pay-now page, once
        it has expired: closed (`_close_pay_now`)."""
        if payment.paid_now:
            return await self._close_pay_now(payment)
        if payment.updated_at > self._clock() - UNFINISHED_AFTER:
            return None  # being made by another worker right now
        async with self._tx.read() as unit:
            customer_id = await PaymentRepository(unit).customer_id(invoice.org_id)
        assert customer_id is not None  # an attempt is written once the customer exists
        stripe = self._stripe()
        found = await stripe.find_attempt(customer_id, invoice.invoice_id, payment.attempt)
        if found is not None:
            return (await self.settle(payment.payment_id, found)).payment
        if invoice.status != "open":  # voided meanwhile, and Stripe made nothing: closed
            not_charged = Charge(
                None,
                PaymentStatus.FAILED,
                payment.amount,
                payment.currency,
                failure="not charged: the invoice is no longer open",
                failure_code="not_charged",
            )
            return (await self.settle(payment.payment_id, not_charged)).payment
        # Asked again exactly as first asked (the same key takes the same parameters): on
        # the card the attempt was written for, whatever the default is now.
        assert payment.stripe_payment_method_id is not None
        return await self._charge(payment, customer_id, payment.stripe_payment_method_id)

    async def _card_at_stripe(self, org_id: str, customer_id: str) -> Card | None:
        """The customer's default card as Stripe has it, for an org with none on file (set
        outside the kernel's Checkout, or its webhook missed), kept once found; Stripe is
        asked at most every CARD_CHECK_EVERY per org, not at every round."""
        now = self._clock()
        async with self._tx.begin() as unit:
            if not await PaymentRepository(unit).claim_card_check(
                org_id, now, now - CARD_CHECK_EVERY
            ):
                return None
        card = await self._stripe().default_card(customer_id)
        if card is not None:
            async with self._tx.begin() as unit:
                await PaymentRepository(unit).set_card(org_id, card, self._clock())
        return card

    async def _close_pay_now(self, payment: Payment, *, early: bool = False) -> Payment | None:
        """A pay-now attempt whose page has expired (or, `early`, any), closed: expired at
        Stripe if still open, then what was paid on it settled, or `canceled` (nothing
        charged; the card on file may be charged next). None while its page still takes
        payment: the invoice waits for it."""
        assert payment.checkout_expires_at is not None
        if payment.checkout_expires_at > self._clock() and not early:
            return None
        charge = None
        if payment.checkout_session_id is not None:
            charge = await self._stripe().close_checkout(payment.checkout_session_id)
        # A Session never recorded was never shown to anyone: nobody could pay on it.
        if charge is None:
            charge = Charge(None, PaymentStatus.CANCELED, payment.amount, payment.currency)
        return (await self.settle(payment.payment_id, charge)).payment

    def offers_pay_now(
        self, status: str, total: Decimal, attempts: Sequence[Payment], *, has_card: bool
    ) -> bool:
        """Whether the billing page offers "Pay now" for an invoice (`rules.pay_now_offered`;
        never without Stripe)."""
        return self.enabled and pay_now_offered(status, total, attempts, has_card)

    async def pay_now(self, org_id: str, invoice_id: str, return_url: str) -> PayNowPage:
        """Where the org's owner pays an open invoice at once: a Stripe Checkout page in
        payment mode for its exact amount (the card number goes to Stripe), returning to
        `return_url` with `?paid=invoice` (or `?paid=canceled`). The attempt it is
        (`pending`, with the page) is written before Stripe is asked, so the card on file
        is not charged while the page takes payment, and the page open for the invoice is
        handed out again rather than a second made. PaymentUnderWay when a charge is being
        made or decided, or the invoice is paid; InvoiceNotOpen for a void one;
        InvoiceNotFound for another org's; PaymentsOff without Stripe; StripeUnavailable
        when Stripe cannot be reached (try again: the same page is made)."""
        self._stripe_or_off()
        invoice = await self._invoices.get(invoice_id, org_id)
        if invoice.status == "paid":
            raise PaymentUnderWay(f"invoice {invoice.number} is paid", invoice_id=invoice_id)
        if invoice.status != "open":
            raise InvoiceNotOpen(f"invoice {invoice.number} is {invoice.status}")
        if invoice.total <= 0:
            raise PaymentUnderWay(f"invoice {invoice.number} comes to nothing to pay")
        joiner = "&" if "?" in return_url else "?"
        back = (f"{return_url}{joiner}paid=invoice", f"{return_url}{joiner}paid=canceled")
        tried = await self.attempts(invoice_id)
        if tried and tried[-1].paid_now and tried[-1].status is PaymentStatus.PENDING:
            if open_pay_now(tried, self._clock()) is not None:
                return await self._open_page(invoice, tried[-1], back)
            await self._close_pay_now(tried[-1], early=True)  # about to expire: a new one
            tried = await self.attempts(invoice_id)
        if tried and tried[-1].status not in (PaymentStatus.FAILED, PaymentStatus.CANCELED):
            raise PaymentUnderWay(
                f"invoice {invoice.number} is being paid (attempt {tried[-1].attempt} is "
                f"{tried[-1].status.value}): wait for its outcome",
                invoice_id=invoice_id,
            )
        customer_id = await self.customer(org_id)
        if customer_id is None:
            raise StripeUnavailable("the org's Stripe customer is being made: try again")
        now = self._clock()
        async with self._tx.begin() as unit:
            payments = PaymentRepository(unit)
            if not await payments.add_attempt(
                payment_id="pay_" + secrets.token_hex(12),
                invoice_id=invoice_id,
                org_id=org_id,
                attempt=len(tried) + 1,
                amount=invoice.total,
                currency=invoice.currency,
                card_id=None,
                now=now,
                checkout_expires_at=now + PAY_NOW_LIFETIME,
            ):
                raise PaymentUnderWay(
                    f"invoice {invoice.number} is being paid: try again in a minute",
                    invoice_id=invoice_id,
                )
            payment = await _attempt(payments, invoice_id, len(tried) + 1)
        return await self._open_page(invoice, payment, back)

    async def _open_page(
        self, invoice: StoredInvoice, payment: Payment, back: tuple[str, str]
    ) -> PayNowPage:
        """The pay-now attempt's page: the one recorded, or made (with the attempt's key, so
        asking again after a lost answer gets the same page) and recorded."""
        if payment.checkout_url is not None:
            return PayNowPage(payment.checkout_url, payment)
        assert payment.checkout_expires_at is not None
        customer_id = await self.customer(invoice.org_id)
        assert customer_id is not None  # an attempt is written once the customer exists
        session_id, url = await self._stripe().checkout_payment(
            invoice_id=invoice.invoice_id,
            number=invoice.number,
            attempt=payment.attempt,
            customer_id=customer_id,
            amount=payment.amount,
            currency=payment.currency,
            expires_at=payment.checkout_expires_at,
            success_url=back[0],
            cancel_url=back[1],
        )
        async with self._tx.begin() as unit:
            payments = PaymentRepository(unit)
            await payments.set_checkout(payment.payment_id, session_id, url)
            return PayNowPage(url, await _attempt(payments, payment.invoice_id, payment.attempt))

    async def _charge(self, payment: Payment, customer_id: str, card_id: str) -> Payment:
        charge = await self._stripe().collect(
            invoice_id=payment.invoice_id,
            attempt=payment.attempt,
            customer_id=customer_id,
            payment_method_id=card_id,
            amount=payment.amount,
            currency=payment.currency,
        )
        return (await self.settle(payment.payment_id, charge)).payment

    async def receive(self, payload: bytes, signature: str | None) -> str:
        """A webhook from Stripe: its signature verified (InvalidSignature, nothing stored,
        otherwise), then applied once for ever by its event id, whatever order it comes in:
        an event about an attempt's PaymentIntent settles the attempt (`settle`); a
        completed Checkout in setup mode makes its card the org's default (`card_added`:
        a failed invoice is then tried again at once); `customer.updated` keeps the
        customer's default card as Stripe now has it (`card_added`, or `card_removed`); a
        pay-now page paid or expired settles its attempt. What applying it did: the effect on
        the invoice (`mark_paid`, `past_due`, `refund_due`, `none`), `card_added`, or
        `duplicate` (applied before), `ignored` (a type the kernel does not act on),
        `unknown_payment` / `unknown_customer` (not the kernel's)."""
        stripe = self._stripe_or_off()
        if self._webhook_secret is None:
            raise PaymentsOff(
                "this deployment does not take Stripe's webhooks (BILLING_STRIPE_WEBHOOK_SECRET)"
            )
        try:
            event = stripe.verify_event(payload, signature, self._webhook_secret)
        except BadSignature as exc:
            raise InvalidSignature(f"the Stripe-Signature does not verify: {exc}") from None
        event_id, kind = str(event["id"]), str(event["type"])
        found = event["data"]["object"]
        card: Card | None = None
        default: Card | None = None
        if kind == "customer.updated":
            async with self._tx.read() as unit:
                if await PaymentRepository(unit).event_applied(event_id):
                    return "duplicate"
            method = (found.get("invoice_settings") or {}).get("default_payment_method")
            default = None if not method else await stripe.card_of(method)
        if kind == "checkout.session.completed" and found.get("mode") == "setup":
            async with self._tx.read() as unit:
                if await PaymentRepository(unit).event_applied(event_id):
                    return "duplicate"
            # Stripe is asked before the transaction: making a card the default twice is
            # harmless, holding a transaction open on Stripe is not.
            card = await stripe.card_of_setup(str(found.get("setup_intent")))
            if card is not None:
                await stripe.make_default(str(found.get("customer")), card.payment_method_id)
        async with self._tx.begin() as unit:
            payments = PaymentRepository(unit)
            if not await payments.record_event(event_id, kind, self._clock(), None, "received"):
                return "duplicate"
            if card is not None:
                org_id = await payments.org_of_customer(str(found.get("customer")))
                if org_id is not None:
                    await payments.set_card(org_id, card, self._clock())
                outcome, payment_id = ("card_added" if org_id else "unknown_customer"), None
            elif kind == "customer.updated":  # the default card, changed at Stripe
                org_id = await payments.org_of_customer(str(found.get("id")))
                if org_id is None:
                    outcome = "unknown_customer"
                elif default is not None:
                    await payments.set_card(org_id, default, self._clock())
                    outcome = "card_added"
                else:
                    await payments.clear_card(org_id, self._clock())
                    outcome = "card_removed"
                payment_id = None
            elif kind in PAY_NOW_EVENTS and found.get("mode") == "payment":
                payment = await payments.by_checkout(str(found["id"]))
                reported = charge_of_checkout(found)
                if payment is None:
                    outcome, payment_id = "unknown_payment", None
                elif reported is None:
                    outcome, payment_id = InvoiceEffect.NONE.value, payment.payment_id
                else:
                    settled = await self._settle(unit, payment.payment_id, reported)
                    outcome, payment_id = settled.effect.value, payment.payment_id
            elif kind not in PAYMENT_INTENT_EVENTS:
                outcome, payment_id = "ignored", None
            else:
                intent = found
                metadata = intent.get("metadata") or {}
                payment = await payments.by_intent(str(intent["id"]))
                if payment is None and str(metadata.get("attempt", "")).isdigit():
                    payment = await payments.by_attempt(
                        str(metadata.get("invoice_id")), int(metadata["attempt"])
                    )
                if payment is None:
                    outcome, payment_id = "unknown_payment", None
                else:
                    settled = await self._settle(unit, payment.payment_id, charge_of(intent))
                    outcome, payment_id = settled.effect.value, payment.payment_id
            await payments.set_event_outcome(event_id, payment_id, outcome)
        return outcome

    async def settle(self, payment_id: str, charge: Charge) -> Settled:
        """Apply what Stripe reported of an attempt: the attempt moved forward (or left as
        it is when the report is old news), and its invoice and org as `invoice_effect`
        says, in one transaction; the event that tells of it recorded with them."""
        async with self._tx.begin() as unit:
            return await self._settle(unit, payment_id, charge)

    async def _settle(self, unit: UnitOfWork, payment_id: str, charge: Charge) -> Settled:
        payments = PaymentRepository(unit)
        now = self._clock()
        while True:
            payment = await payments.get(payment_id)
            if payment is None:
                raise LookupError(f"no payment {payment_id!r}")
            after = moved(payment.status, charge.status)
            if after is None:
                if charge.payment_intent_id is not None:
                    await payments.note_intent(payment_id, charge.payment_intent_id)
                return Settled(payment, InvoiceEffect.NONE)
            if await payments.move(
                payment_id,
                payment.status,
                after,
                payment_intent_id=charge.payment_intent_id,
                failure_code=charge.failure_code if after is PaymentStatus.FAILED else None,
                failure_message=charge.failure if after is PaymentStatus.FAILED else None,
                now=now,
            ):
                break  # else it moved meanwhile: judge the report again against that
        payment = await _attempt(payments, payment.invoice_id, payment.attempt)
        invoice = await self._invoices.get(payment.invoice_id, uow=unit)
        effect = invoice_effect(payment_id, after, InvoiceState(invoice.status, invoice.paid_by))
        if effect is InvoiceEffect.MARK_PAID:
            try:
                invoice = await self._invoices.mark_paid(
                    invoice.invoice_id, unit, paid_by=payment_id
                )
            except InvoiceNotOpen:  # voided since it was read: the money is to give back
                effect = InvoiceEffect.REFUND_DUE
                invoice = await self._invoices.get(payment.invoice_id, uow=unit)
            else:
                await self._standing_after_payment(unit, invoice.org_id)
        elif effect is InvoiceEffect.PAST_DUE:
            state = await self._subscriptions.billing_state(invoice.org_id, unit)
            if state.status is BillingStatus.ACTIVE:
                await self._subscriptions.set_status(invoice.org_id, BillingStatus.PAST_DUE, unit)
        told = payment_event(effect, _outcome(payment, invoice), now)
        if told is not None:
            await self._events.record([told], unit)
        return Settled(payment, effect)

    async def _standing_after_payment(self, unit: UnitOfWork, org_id: str) -> None:
        """A past-due org is active again once none of its open invoices has a failed last
        attempt; a trial or a cancellation is not changed by a payment."""
        state = await self._subscriptions.billing_state(org_id, unit)
        if state.status is BillingStatus.PAST_DUE and not await PaymentRepository(unit).failed_open(
            org_id
        ):
            await self._subscriptions.set_status(org_id, BillingStatus.ACTIVE, unit)

    async def verify(self) -> list[str]:
        """Check the kernel's payment records against each other and the invoices they pay
        (`rules.payment_disagreements`; Stripe is not asked): each disagreement in words,
        none when all hold."""
        async with self._tx.read() as unit:
            payments = PaymentRepository(unit)
            made = await payments.every_attempt()
            invoices = await payments.paid_or_tried_invoices()
            refunds = await self._events.events(
                org_id=None, types=[EventType.PAYMENT_REFUND_DUE], limit=1_000_000, uow=unit
            )
        told = {str(event.data.get("payment_id")) for _, event in refunds}
        return payment_disagreements(invoices, made, told)

    async def reconcile(
        self, since: datetime, *, repair: bool = False
    ) -> tuple[list[Difference], list[Difference]]:
        """Compare every attempt made since `since` with Stripe's PaymentIntents made since a
        day before it (`rules.differences`): what differs, and, with `repair`, what was
        mended by settling an attempt with Stripe's record (a missed webhook's effect). The
        rest is for a person: each difference says what to do. PaymentsOff without Stripe."""
        stripe = self._stripe_or_off()
        async with self._tx.read() as unit:
            ours = await PaymentRepository(unit).made_since(since)
        theirs = await stripe.attempts_since(since - timedelta(days=1))
        found = differences(ours, theirs)
        repaired: list[Difference] = []
        if repair:
            for difference in found:
                if difference.repair is not None and difference.payment_id is not None:
                    await self.settle(difference.payment_id, difference.repair)
                    repaired.append(difference)
        return [d for d in found if d not in repaired], repaired

    async def collect_due(self, limit: int = 100) -> list[Payment]:
        """The worker's round: turn each trial that has ended with a card on file into an
        active (billed) org, finish attempts whose answer was lost, then collect each open
        invoice above zero not yet tried or whose retry is due. An org whose Stripe call
        fails is left for the next round; the others go on."""
        now = self._clock()
        async with self._tx.read() as unit:
            payments = PaymentRepository(unit)
            converting = await payments.trials_to_convert(now, limit)
            unfinished = await payments.unfinished(now - UNFINISHED_AFTER, now, limit)
            untried = await payments.collectable(limit)
        for org_id in converting:  # a trial with a card becomes a paying org when it ends
            async with self._tx.begin() as unit:
                state = await self._subscriptions.billing_state(org_id, unit)
                if state.status is BillingStatus.TRIAL:
                    await self._subscriptions.set_status(org_id, BillingStatus.ACTIVE, unit)
        done: list[Payment] = []
        for invoice_id in [p.invoice_id for p in unfinished] + untried:
            try:
                made = await self.collect(invoice_id)
            except StripeUnavailable:
                continue  # the same key next round
            except StripeRefused:  # e.g. the customer was deleted at Stripe: the operator's
                logger.exception("Stripe refused collecting invoice %s", invoice_id)
                continue
            if made is not None:
                done.append(made)
        return done


async def _attempt(payments: PaymentRepository, invoice_id: str, attempt: int) -> Payment:
    found = await payments.by_attempt(invoice_id, attempt)
    assert found is not None, (invoice_id, attempt)
    return found


def _outcome(payment: Payment, invoice: StoredInvoice) -> Outcome:
    return Outcome(
        payment_id=payment.payment_id,
        invoice_id=invoice.invoice_id,
        invoice_number=invoice.number,
        org_id=invoice.org_id,
        attempt=payment.attempt,
        amount=payment.amount,
        currency=payment.currency,
        payment_intent_id=payment.stripe_payment_intent_id,
        failure=payment.failure_message,
        failure_code=payment.failure_code,
    )
