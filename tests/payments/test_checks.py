"""The checks of payments: what differs from Stripe's record, and what the kernel's own
records say that cannot all be true."""

from datetime import UTC, datetime
from decimal import Decimal

from billing_kernel.payments.checks import (
    Difference,
    PaidInvoice,
    StripeAttempt,
    differences,
    payment_disagreements,
)
from billing_kernel.payments.rules import Charge, Payment, PaymentStatus

P = PaymentStatus


def attempt(status: PaymentStatus, intent: str | None, amount: str = "49.75") -> Payment:
    at = datetime(2026, 12, 3, tzinfo=UTC)
    return Payment(
        "pay_1", "inv_1", "acme", 1, status, Decimal(amount), "USD", intent, None, None, None,
        at, at,
    )  # fmt: skip


def at_stripe(
    status: PaymentStatus,
    intent: str = "pi_1",
    invoice: str | None = "inv_1",
    amount: str = "49.75",
) -> StripeAttempt:
    return StripeAttempt(Charge(intent, status, Decimal(amount), "usd"), invoice, 1)


def test_reconciling_finds_what_differs_and_what_a_missed_webhook_would_mend() -> None:
    subject = "pay_1 (invoice inv_1, attempt 1)"
    agreed = differences([attempt(P.SUCCEEDED, "pi_1")], [at_stripe(P.SUCCEEDED)])
    assert agreed == []
    assert differences([attempt(P.FAILED, None)], []) == []  # declined before any intent
    assert differences([attempt(P.PENDING, None)], []) == []  # the next round asks
    assert differences([attempt(P.PENDING, None)], [at_stripe(P.SUCCEEDED)]) == [  # metadata
        Difference(
            subject,
            "Stripe has it succeeded, the kernel pending: a webhook was missed",
            "--repair applies it",
            repair=at_stripe(P.SUCCEEDED).charge,
            payment_id="pay_1",
        )
    ]
    # Known by its PaymentIntent: another intent with the attempt's metadata is not it.
    elsewhere = [at_stripe(P.SUCCEEDED, "pi_1"), at_stripe(P.FAILED, "pi_2")]
    assert differences([attempt(P.SUCCEEDED, "pi_1")], elsewhere) == []
    gone = Difference(
        subject,
        "the kernel has it succeeded, Stripe has no PaymentIntent for it",
        "look for the charge in Stripe's dashboard (another account or mode?) before anything else",
    )
    assert differences([attempt(P.SUCCEEDED, "pi_1")], []) == [gone]
    amount = Difference(
        subject,
        "the kernel charged USD 49.75, Stripe USD 4.97",
        "refund or charge the difference in Stripe, then mark it here",
    )
    assert differences([attempt(P.SUCCEEDED, "pi_1")], [at_stripe(P.SUCCEEDED, amount="4.97")]) == [
        amount
    ]
    refused = Difference(
        subject,
        "the kernel has it succeeded, Stripe failed",
        "check the PaymentIntent in Stripe; the invoice may not be paid",
    )
    assert differences([attempt(P.SUCCEEDED, "pi_1")], [at_stripe(P.FAILED)]) == [refused]
    stray = Difference(
        "pi_9",
        "Stripe collected USD 49.75 for invoice inv_2 (attempt 1), which the kernel has no "
        "record of",
        "refund it in Stripe, or mark the invoice paid if it is the payment",
    )
    assert differences([], [at_stripe(P.SUCCEEDED, "pi_9", "inv_2")]) == [stray]
    assert differences([], [at_stripe(P.FAILED, "pi_9", "inv_2")]) == []  # nothing taken
    assert differences([], [at_stripe(P.SUCCEEDED, "pi_9", None)]) == []  # not the kernel's
    # Each is judged on its own: one that agrees or has nothing does not stop the others.
    assert differences(
        [attempt(P.FAILED, None), attempt(P.SUCCEEDED, "pi_1")],
        [at_stripe(P.SUCCEEDED, "pi_0", None), at_stripe(P.SUCCEEDED, "pi_9", "inv_2")],
    ) == [gone, stray]


def test_payment_records_that_cannot_all_be_true_are_named() -> None:
    def paying(
        payment_id: str, invoice: str, n: int, status: PaymentStatus, amount: str = "49.75"
    ) -> Payment:
        at = datetime(2026, 12, 3, tzinfo=UTC)
        return Payment(
            payment_id, invoice, "acme", n, status, Decimal(amount), "USD", None, None, None,
            None, at, at,
        )  # fmt: skip

    def invoice(invoice_id: str, status: str, paid_by: str | None) -> PaidInvoice:
        return PaidInvoice(invoice_id, f"N-{invoice_id}", status, Decimal("49.75"), "USD", paid_by)

    sound = [
        paying("p1", "i1", 1, P.FAILED),
        paying("p2", "i1", 2, P.SUCCEEDED),
        paying("p3", "i2", 1, P.PENDING),
    ]
    assert (
        payment_disagreements(
            [invoice("i1", "paid", "p2"), invoice("i2", "open", None), invoice("i3", "paid", None)],
            sound,
            (),
        )
        == []
    )
    assert payment_disagreements(
        [
            invoice("i0", "open", None),  # not paid: nothing to check, and the rest go on
            invoice("i1", "paid", "p0"),
            invoice("i2", "paid", "p1"),
            invoice("i3", "paid", "p2"),
            invoice("i4", "paid", "p4"),
        ],
        [
            paying("p1", "i2", 1, P.FAILED),
            paying("p2", "i4", 1, P.SUCCEEDED),
            paying("p4", "i4", 2, P.SUCCEEDED, "4.97"),
            paying("p5", "i5", 1, P.SUCCEEDED),
            paying("p6", "i6", 1, P.SUCCEEDED),
            paying("p7", "i7", 2, P.FAILED),
            paying("p8", "i8", 1, P.PROCESSING),
            paying("p9", "i8", 2, P.FAILED),
        ],
        {"p6"},
    ) == [
        "N-i1 is paid by p0, which does not exist",
        "N-i2 is paid by p1, which is failed",
        "N-i3 is paid by p2, which collected i4",
        "N-i4 is paid by p4, which took USD 4.97 of USD 49.75",
        "p2 took USD 49.75 for i4, which it did not pay, and no refund was told",
        "p5 took USD 49.75 for i5, which it did not pay, and no refund was told",
        "i7's attempts are numbered [2]",
        "i8 has attempts [1] under way before its last",
    ]
