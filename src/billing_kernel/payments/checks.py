"""Checks of payments, pure: what differs between the kernel's attempts and Stripe's record
(`payments reconcile`), and what the kernel's own records say that cannot all be true
(`payments verify`). Standard library and payments' rules only."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal

from billing_kernel.payments.rules import Charge, Payment, PaymentStatus, moved


@dataclass(frozen=True, slots=True)
class StripeAttempt:
    """A PaymentIntent as Stripe has it, with the attempt its metadata names (None: not one
    the kernel made)."""

    charge: Charge
    invoice_id: str | None
    attempt: int | None


@dataclass(frozen=True, slots=True)
class Difference:
    """Where the kernel's record of a payment and Stripe's disagree, and what to do."""

    subject: str
    """The payment or PaymentIntent it is about."""
    said: str
    to_do: str
    repair: Charge | None = None
    """What settling the attempt with Stripe's record would apply (`--repair`): a missed
    webhook's effect; None when only a person can mend it."""
    payment_id: str | None = None
    """The kernel's attempt, when it is about one."""


def differences(payments: Sequence[Payment], stripe: Sequence[StripeAttempt]) -> list[Difference]:
    """Every disagreement between the kernel's attempts and Stripe's PaymentIntents: an
    attempt Stripe has no PaymentIntent for (though the kernel thinks one was made), amounts
    or currencies that differ, a status Stripe moved past (a missed webhook: repairable),
    a success the kernel has and Stripe does not, and a PaymentIntent for an invoice the
    kernel made no such attempt for."""
    by_id = {s.charge.payment_intent_id: s for s in stripe}
    by_attempt = {(s.invoice_id, s.attempt): s for s in stripe if s.invoice_id is not None}
    found: list[Difference] = []
    matched: set[str | None] = set()
    for payment in payments:
        theirs = (
            by_id.get(payment.stripe_payment_intent_id)
            if (payment.stripe_payment_intent_id)
            else by_attempt.get((payment.invoice_id, payment.attempt))
        )
        subject = f"{payment.payment_id} (invoice {payment.invoice_id}, attempt {payment.attempt})"
        if theirs is None:
            if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.PROCESSING):
                found.append(
                    Difference(
                        subject,
                        f"the kernel has it {payment.status.value}, Stripe has no "
                        "PaymentIntent for it",
                        "look for the charge in Stripe's dashboard (another account or "
                        "mode?) before anything else",
                    )
                )
            continue
        matched.add(theirs.charge.payment_intent_id)
        ours = (payment.amount, payment.currency.upper())
        if ours != (theirs.charge.amount, theirs.charge.currency.upper()):
            found.append(
                Difference(
                    subject,
                    f"the kernel charged {ours[1]} {ours[0]}, Stripe "
                    f"{theirs.charge.currency.upper()} {theirs.charge.amount}",
                    "refund or charge the difference in Stripe, then mark it here",
                )
            )
        after = moved(payment.status, theirs.charge.status)
        if after is not None:
            found.append(
                Difference(
                    subject,
                    f"Stripe has it {theirs.charge.status.value}, the kernel "
                    f"{payment.status.value}: a webhook was missed",
                    "--repair applies it",
                    repair=theirs.charge,
                    payment_id=payment.payment_id,
                )
            )
        elif (
            payment.status is PaymentStatus.SUCCEEDED
            and theirs.charge.status is not PaymentStatus.SUCCEEDED
        ):
            found.append(
                Difference(
                    subject,
                    f"the kernel has it succeeded, Stripe {theirs.charge.status.value}",
                    "check the PaymentIntent in Stripe; the invoice may not be paid",
                )
            )
    for theirs in stripe:
        if theirs.invoice_id is None or theirs.charge.payment_intent_id in matched:
            continue
        if theirs.charge.status is PaymentStatus.SUCCEEDED:
            found.append(
                Difference(
                    str(theirs.charge.payment_intent_id),
                    f"Stripe collected {theirs.charge.currency.upper()} {theirs.charge.amount} "
                    f"for invoice {theirs.invoice_id} (attempt {theirs.attempt}), which the "
                    "kernel has no record of",
                    "refund it in Stripe, or mark the invoice paid if it is the payment",
                )
            )
    return found


@dataclass(frozen=True, slots=True)
class PaidInvoice:
    """An invoice as payments are checked against it."""

    invoice_id: str
    number: str
    status: str
    total: Decimal
    currency: str
    paid_by: str | None


def payment_disagreements(
    invoices: Sequence[PaidInvoice], payments: Sequence[Payment], refunds_told: Collection[str]
) -> list[str]:
    """What the kernel's own payment records say that cannot all be true (`payments
    verify`; Stripe is not asked): an invoice paid by a payment that is missing, not
    succeeded, of another invoice or another amount; a succeeded payment whose invoice it
    did not pay and for which no refund was told (`payment.refund_due`); attempts of one
    invoice not numbered 1, 2, 3, ... or with one still under way before the last."""
    found: list[str] = []
    by_id = {p.payment_id: p for p in payments}
    invoice_of = {i.invoice_id: i for i in invoices}
    for invoice in invoices:
        if invoice.paid_by is None:
            continue
        paid = by_id.get(invoice.paid_by)
        said = f"{invoice.number} is paid by {invoice.paid_by}"
        if paid is None:
            found.append(f"{said}, which does not exist")
        elif paid.status is not PaymentStatus.SUCCEEDED:
            found.append(f"{said}, which is {paid.status.value}")
        elif paid.invoice_id != invoice.invoice_id:
            found.append(f"{said}, which collected {paid.invoice_id}")
        elif (paid.amount, paid.currency) != (invoice.total, invoice.currency):
            found.append(
                f"{said}, which took {paid.currency} {paid.amount} of {invoice.currency} "
                f"{invoice.total}"
            )
    attempts: dict[str, list[Payment]] = {}
    for payment in payments:
        attempts.setdefault(payment.invoice_id, []).append(payment)
        paid_for = invoice_of.get(payment.invoice_id)
        if (
            payment.status is PaymentStatus.SUCCEEDED
            and (paid_for is None or paid_for.paid_by != payment.payment_id)
            and payment.payment_id not in refunds_told
        ):
            found.append(
                f"{payment.payment_id} took {payment.currency} {payment.amount} for "
                f"{payment.invoice_id}, which it did not pay, and no refund was told"
            )
    for invoice_id, made in sorted(attempts.items()):
        numbers = sorted(p.attempt for p in made)
        if numbers != list(range(1, len(numbers) + 1)):
            found.append(f"{invoice_id}'s attempts are numbered {numbers}")
        under_way = [
            p.attempt
            for p in made
            if p.status in (PaymentStatus.PENDING, PaymentStatus.PROCESSING)
            and p.attempt != max(numbers)
        ]
        if under_way:
            found.append(f"{invoice_id} has attempts {under_way} under way before its last")
    return found
