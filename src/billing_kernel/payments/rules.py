"""Payments' pure rules: an invoice's amount as Stripe takes it (the currency's minor unit),
the idempotency key of every call the kernel makes to Stripe, the dunning schedule, and what
a payment's outcome, reported in whatever order, does to the payment and to its invoice.
Standard library only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import Event, EventType, event_id

ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
        "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
"""Currencies Stripe charges in whole units: JPY 1,234 is `amount=1234` (Stripe's list)."""

THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
"""Currencies Stripe charges in thousandths, the last digit 0: KWD 5.12 is `amount=5120`."""


def minor_exponent(currency: str) -> int:
    """How many decimal places the currency's smallest unit has, as Stripe counts them."""
    code = currency.upper()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def minor_units(amount: Decimal, currency: str) -> int:
    """`amount` as Stripe's `amount` field: a whole number of the currency's smallest unit
    (cents; yen). InvalidInput for a negative amount, or one finer than the currency
    holds (JPY 10.50: an invoice in yen must come to whole yen)."""
    if amount < 0:
        raise InvalidInput(f"cannot collect a negative amount ({amount} {currency})")
    exponent = minor_exponent(currency)
    scaled = amount.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise InvalidInput(
            f"{amount} {currency.upper()} has more decimal places than the currency's "
            f"smallest unit ({exponent})",
            field="amount",
        )
    return int(scaled)


def from_minor_units(units: int, currency: str) -> Decimal:
    """A Stripe `amount` back as money: `minor_units`' inverse."""
    return Decimal(units).scaleb(-minor_exponent(currency))


def customer_key(org_id: str) -> str:
    """The idempotency key of creating the org's Stripe customer: a retry after a crash, or
    a second worker, replays the first creation instead of making another."""
    return f"customer:{org_id}"


def attempt_key(invoice_id: str, attempt: int) -> str:
    """The idempotency key of the `attempt`th collection of an invoice (from 1): a retried
    request replays its attempt; a dunning retry is a new attempt, so a new charge."""
    if attempt < 1:
        raise ValueError(f"attempts are counted from 1, not {attempt}")
    return f"invoice:{invoice_id}:attempt:{attempt}"


def checkout_key(invoice_id: str, attempt: int) -> str:
    """The idempotency key of the pay-now page (a Stripe Checkout Session) the `attempt`th
    attempt offers: its own, apart from `attempt_key`, as it makes another kind of object."""
    return f"{attempt_key(invoice_id, attempt)}:checkout"


def refund_key(credit_note_id: str) -> str:
    """The idempotency key of refunding a credit note: one refund per credit note."""
    return f"refund:{credit_note_id}"


def next_retry(
    first_failed_at: datetime, retries_made: int, schedule: tuple[int, ...]
) -> datetime | None:
    """When a failed collection is tried again: `schedule[n]` days after it first failed,
    for the retry `retries_made` + 1; None once the schedule is spent (the org stays
    past due, and enforcement takes over)."""
    if retries_made < 0:
        raise ValueError(f"retries made cannot be negative ({retries_made})")
    if retries_made >= len(schedule):
        return None
    return first_failed_at + timedelta(days=schedule[retries_made])


def retry_due(
    first_failed_at: datetime,
    retries_made: int,
    schedule: tuple[int, ...],
    now: datetime,
    *,
    new_card: bool,
) -> bool:
    """Whether a failed collection is tried again now: at once on a new card (whatever the
    schedule), else when the schedule says (`next_retry`); never once it is spent."""
    if new_card:
        return True
    due = next_retry(first_failed_at, retries_made, schedule)
    return due is not None and due <= now


@dataclass(frozen=True, slots=True)
class Card:
    """A customer's card on file, as the billing page shows it: never its number."""

    payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


class PaymentStatus(StrEnum):
    """One collection attempt (one PaymentIntent). `pending`: written, Stripe not yet heard
    (or, paid now, its page still open); `processing`: Stripe has it and has not decided (a
    bank debit, an authentication); `succeeded` and `failed`: Stripe's answer; `canceled`:
    a pay-now page left unpaid until it expired, nothing charged."""

    PENDING = "pending"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class Charge:
    """What Stripe answered to one collection attempt."""

    payment_intent_id: str | None
    """None only when Stripe declined before making a PaymentIntent."""
    status: PaymentStatus
    amount: Decimal
    currency: str
    failure: str | None = None
    """Why it failed, in Stripe's words ("Your card was declined.")."""
    failure_code: str | None = None
    """Stripe's decline code or error code (`card_declined`, `insufficient_funds`)."""


@dataclass(frozen=True, slots=True)
class RefundMade:
    """What Stripe answered to a refund."""

    refund_id: str
    succeeded: bool | None
    """True: given back; False: failed or canceled; None: Stripe is still deciding."""
    amount: Decimal
    currency: str
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class Payment:
    """One attempt to collect an invoice, as recorded."""

    payment_id: str
    invoice_id: str
    org_id: str
    attempt: int
    status: PaymentStatus
    amount: Decimal
    currency: str
    stripe_payment_intent_id: str | None
    stripe_payment_method_id: str | None
    failure_code: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime
    checkout_session_id: str | None = None
    """Paid now: the Stripe Checkout Session (payment mode) the org's owner pays on."""
    checkout_url: str | None = None
    checkout_expires_at: datetime | None = None
    """Paid now: when its page stops taking payment (it is closed then, if still open,
    before the card on file is charged: never both)."""

    @property
    def paid_now(self) -> bool:
        """Whether this attempt is a pay-now page rather than a charge of the card on file."""
        return self.checkout_expires_at is not None


_MOVES: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PENDING: frozenset(
        {
            PaymentStatus.PROCESSING,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELED,
        }
    ),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED}),
    # A failed PaymentIntent may still be confirmed again and succeed; a succeeded one is
    # final, so a `payment_failed` reported after it changes nothing. Money reported for a
    # page thought expired is money all the same.
    PaymentStatus.FAILED: frozenset({PaymentStatus.SUCCEEDED}),
    PaymentStatus.CANCELED: frozenset({PaymentStatus.SUCCEEDED}),
    PaymentStatus.SUCCEEDED: frozenset(),
}


def moved(current: PaymentStatus, reported: PaymentStatus) -> PaymentStatus | None:
    """The attempt's new status once Stripe reports `reported`, or None when the report
    changes nothing: a repeat, or news older than what is known (Stripe's webhooks come
    in any order)."""
    return reported if reported in _MOVES[current] else None


PAY_NOW_LIFETIME = timedelta(hours=1)
"""How long a pay-now page takes payment (Stripe allows 30 minutes to 24 hours): the card on
file is not charged for the invoice until it has expired, so it is kept short."""

PAY_NOW_MARGIN = timedelta(minutes=10)
"""A pay-now page closer than this to expiring is not handed out again: it is closed, and a
new one made."""


def dunning_attempts(attempts: Sequence[Payment]) -> list[Payment]:
    """The attempts the dunning schedule counts: every one but a pay-now page left unpaid
    (`canceled`: nothing was charged, so nothing failed)."""
    return [a for a in attempts if a.status is not PaymentStatus.CANCELED]


def open_pay_now(attempts: Sequence[Payment], now: datetime) -> Payment | None:
    """The invoice's pay-now attempt, when its last attempt is one whose page takes payment
    for a while yet (`PAY_NOW_MARGIN`): its page is handed out again rather than a second
    one made."""
    if not attempts:
        return None
    last = attempts[-1]
    if (
        last.status is PaymentStatus.PENDING
        and last.checkout_expires_at is not None
        and last.checkout_expires_at - PAY_NOW_MARGIN > now
    ):
        return last
    return None


def pay_now_offered(
    status: str, total: Decimal, attempts: Sequence[Payment], has_card: bool
) -> bool:
    """Whether the billing page offers "Pay now" for an invoice: open and above zero, and
    waiting for a card, or its last charge failed, or its last pay-now page was left unpaid,
    or one is open (handed out again, or, near its end, replaced). Not while the card on
    file is about to be charged or a charge is under way (the page would only lose the race
    to it)."""
    if status != "open" or total <= 0:
        return False
    if not attempts:
        return not has_card
    last = attempts[-1]
    return last.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED) or (
        last.status is PaymentStatus.PENDING and last.paid_now
    )


class InvoiceEffect(StrEnum):
    """What a payment's success or failure does to its invoice."""

    MARK_PAID = "mark_paid"
    """The invoice was open: it is paid, by this payment."""
    REFUND_DUE = "refund_due"
    """Money came in for an invoice void or already paid by something else: it is to be
    given back, and the operator is told."""
    PAST_DUE = "past_due"
    """A collection of an open invoice failed: the org is past due."""
    NONE = "none"


@dataclass(frozen=True, slots=True)
class InvoiceState:
    """What a payment's outcome is judged against: the invoice's status and, once paid,
    the payment that paid it (None: marked paid by hand)."""

    status: str
    paid_by: str | None = None


def invoice_effect(
    payment_id: str, reported: PaymentStatus, invoice: InvoiceState
) -> InvoiceEffect:
    """What the payment `payment_id` reported as `reported` does to its invoice, in
    whatever order the reports arrive: a success pays an open invoice, and is money to give
    back when the invoice is void or was paid otherwise; a failure makes the org past due
    only while the invoice is still open."""
    if reported is PaymentStatus.SUCCEEDED:
        if invoice.status == "open":
            return InvoiceEffect.MARK_PAID
        if invoice.status == "paid" and invoice.paid_by == payment_id:
            return InvoiceEffect.NONE  # this very payment, reported again
        return InvoiceEffect.REFUND_DUE
    if reported is PaymentStatus.FAILED and invoice.status == "open":
        return InvoiceEffect.PAST_DUE
    return InvoiceEffect.NONE


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt as the event that tells of it reads it."""

    payment_id: str
    invoice_id: str
    invoice_number: str
    org_id: str
    attempt: int
    amount: Decimal
    currency: str
    payment_intent_id: str | None
    failure: str | None = None
    failure_code: str | None = None


_TOLD = {
    InvoiceEffect.MARK_PAID: EventType.PAYMENT_SUCCEEDED,
    InvoiceEffect.PAST_DUE: EventType.PAYMENT_FAILED,
    InvoiceEffect.REFUND_DUE: EventType.PAYMENT_REFUND_DUE,
}


def payment_event(effect: InvoiceEffect, outcome: Outcome, now: datetime) -> Event | None:
    """The event that says what an attempt did to its invoice, or None when it did nothing:
    `payment.succeeded` (paid) and `payment.failed` (the org past due), the org's;
    `payment.refund_due` (money came in for an invoice void or paid otherwise), the
    operators' (FOR_OPERATORS): only deployment-wide endpoints get it. One per
    attempt and effect, however often it is applied."""
    told = _TOLD.get(effect)
    if told is None:
        return None
    data: dict[str, object] = {
        "org_id": outcome.org_id,
        "invoice_id": outcome.invoice_id,
        "invoice_number": outcome.invoice_number,
        "payment_id": outcome.payment_id,
        "attempt": outcome.attempt,
        "amount": f"{outcome.amount:.2f}",
        "currency": outcome.currency,
        "stripe_payment_intent_id": outcome.payment_intent_id,
    }
    if told is EventType.PAYMENT_FAILED:
        data |= {"failure": outcome.failure, "failure_code": outcome.failure_code}
    return Event(
        event_id=event_id(told, outcome.payment_id),
        event_type=told,
        org_id=outcome.org_id,
        created_at=now,
        data=data,
    )


def card_needed_event(
    org_id: str, invoice_id: str, number: str, amount: Decimal, currency: str, now: datetime
) -> Event:
    """The event that an invoice is ready to be collected and its org has no card on file:
    the org's owners are told to add one. One per invoice, however often it is written."""
    return Event(
        event_id=event_id(EventType.PAYMENT_CARD_NEEDED, invoice_id),
        event_type=EventType.PAYMENT_CARD_NEEDED,
        org_id=org_id,
        created_at=now,
        data={
            "org_id": org_id,
            "invoice_id": invoice_id,
            "invoice_number": number,
            "amount": f"{amount:.2f}",
            "currency": currency,
        },
    )
