"""Payments' pure rules: minor units, idempotency keys, the dunning schedule, and what a
payment's outcome does, whatever order it is reported in."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import permutations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_kernel.errors import InvalidInput
from billing_kernel.events.rules import EventType, event_id
from billing_kernel.payments.rules import (
    Charge,
    Difference,
    InvoiceEffect,
    InvoiceState,
    Outcome,
    PaidInvoice,
    Payment,
    PaymentStatus,
    StripeAttempt,
    attempt_key,
    customer_key,
    differences,
    from_minor_units,
    invoice_effect,
    minor_exponent,
    minor_units,
    moved,
    next_retry,
    payment_disagreements,
    payment_event,
    refund_key,
    retry_due,
)

P = PaymentStatus


@pytest.mark.parametrize(
    ("amount", "currency", "units"),
    [
        ("49.00", "USD", 4900),
        ("0.01", "usd", 1),
        ("59.28", "EUR", 5928),
        ("1234", "JPY", 1234),
        ("1234.00", "jpy", 1234),
        ("0", "KRW", 0),
        ("5.12", "KWD", 5120),
        ("5.125", "BHD", 5125),
        ("0.00", "USD", 0),
    ],
)
def test_an_amount_is_a_whole_number_of_the_currencys_smallest_unit(
    amount: str, currency: str, units: int
) -> None:
    assert minor_units(Decimal(amount), currency) == units
    assert from_minor_units(units, currency) == Decimal(amount)


def test_an_amount_finer_than_the_currency_or_negative_is_refused() -> None:
    with pytest.raises(InvalidInput) as yen:
        minor_units(Decimal("10.50"), "jpy")
    assert str(yen.value) == (
        "10.50 JPY has more decimal places than the currency's smallest unit (0)"
    )
    assert yen.value.details == {"field": "amount"}
    with pytest.raises(InvalidInput) as cents:
        minor_units(Decimal("0.001"), "USD")
    assert str(cents.value).endswith("smallest unit (2)")
    with pytest.raises(InvalidInput) as negative:
        minor_units(Decimal("-0.01"), "USD")
    assert str(negative.value) == "cannot collect a negative amount (-0.01 USD)"


def test_currency_exponents_follow_stripes_lists() -> None:
    assert [minor_exponent(c) for c in ("USD", "JPY", "xof", "KWD", "tnd", "GBP")] == [
        2, 0, 0, 3, 3, 2,
    ]  # fmt: skip


@given(st.integers(0, 10**14), st.sampled_from(["USD", "JPY", "KWD", "EUR", "CLP"]))
def test_minor_units_round_trip(units: int, currency: str) -> None:
    assert minor_units(from_minor_units(units, currency), currency) == units


def test_every_call_to_stripe_has_a_key_derived_from_the_kernels_ids() -> None:
    assert customer_key("acme") == "customer:acme"
    assert attempt_key("inv_1", 1) == "invoice:inv_1:attempt:1"
    assert attempt_key("inv_1", 2) != attempt_key("inv_1", 1)  # a dunning retry charges anew
    assert refund_key("cn_7") == "refund:cn_7"
    with pytest.raises(ValueError, match="attempts are counted from 1, not 0"):
        attempt_key("inv_1", 0)
    assert attempt_key("inv_1", 1) == "invoice:inv_1:attempt:1"


def test_retries_follow_the_schedule_from_the_first_failure_then_stop() -> None:
    failed = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    schedule = (1, 3, 5, 7)
    retries = [next_retry(failed, n, schedule) for n in range(5)]
    assert retries == [
        datetime(2026, 12, 2, 9, 30, tzinfo=UTC),
        datetime(2026, 12, 4, 9, 30, tzinfo=UTC),
        datetime(2026, 12, 6, 9, 30, tzinfo=UTC),
        datetime(2026, 12, 8, 9, 30, tzinfo=UTC),
        None,
    ]
    assert next_retry(failed, 0, ()) is None
    with pytest.raises(ValueError, match=r"retries made cannot be negative \(-1\)"):
        next_retry(failed, -1, schedule)


def test_a_payment_moves_forward_only_and_success_is_final() -> None:
    assert moved(P.PENDING, P.PROCESSING) is P.PROCESSING
    assert moved(P.PENDING, P.SUCCEEDED) is P.SUCCEEDED
    assert moved(P.PENDING, P.FAILED) is P.FAILED
    assert moved(P.PROCESSING, P.SUCCEEDED) is P.SUCCEEDED
    assert moved(P.PROCESSING, P.FAILED) is P.FAILED
    assert moved(P.FAILED, P.SUCCEEDED) is P.SUCCEEDED  # confirmed again, and it went through
    for final in (P.PROCESSING, P.FAILED, P.SUCCEEDED, P.PENDING):
        assert moved(P.SUCCEEDED, final) is None
    for stale in (P.PENDING, P.PROCESSING, P.FAILED):
        assert moved(P.FAILED, stale) is None
    assert moved(P.PROCESSING, P.PROCESSING) is None
    assert moved(P.PROCESSING, P.PENDING) is None
    assert moved(P.PENDING, P.PENDING) is None


def test_whatever_order_the_reports_come_in_a_success_ends_succeeded() -> None:
    reports = [P.PROCESSING, P.FAILED, P.SUCCEEDED, P.FAILED]
    for order in permutations(reports):
        status = P.PENDING
        for reported in order:
            status = moved(status, reported) or status
        assert status is P.SUCCEEDED


def test_what_a_payment_does_to_its_invoice() -> None:
    def effect(reported: PaymentStatus, status: str, paid_by: str | None = None) -> str:
        return invoice_effect("pi_1", reported, InvoiceState(status, paid_by)).value

    assert effect(P.SUCCEEDED, "open") == "mark_paid"
    assert effect(P.SUCCEEDED, "paid", "pi_1") == "none"  # reported again
    assert effect(P.SUCCEEDED, "paid", "pi_2") == "refund_due"  # paid twice
    assert effect(P.SUCCEEDED, "paid") == "refund_due"  # marked paid by hand meanwhile
    assert effect(P.SUCCEEDED, "void") == "refund_due"
    assert effect(P.FAILED, "open") == "past_due"
    assert effect(P.FAILED, "paid", "pi_1") == "none"  # late news of an earlier failure
    assert effect(P.FAILED, "void") == "none"
    assert effect(P.PROCESSING, "open") == "none"
    assert effect(P.PENDING, "open") == "none"
    assert InvoiceEffect.PAST_DUE.value == "past_due"
    assert InvoiceState("open").paid_by is None


def test_what_a_payment_did_is_told_by_one_event_per_attempt_and_effect() -> None:
    now = datetime(2026, 12, 3, 9, tzinfo=UTC)
    outcome = Outcome(
        payment_id="pay_1",
        invoice_id="inv_1",
        invoice_number="INV-000007",
        org_id="acme",
        attempt=2,
        amount=Decimal("5"),
        currency="JPY",
        payment_intent_id="pi_1",
        failure="Your card was declined.",
        failure_code="card_declined",
    )
    common = {
        "org_id": "acme",
        "invoice_id": "inv_1",
        "invoice_number": "INV-000007",
        "payment_id": "pay_1",
        "attempt": 2,
        "amount": "5.00",
        "currency": "JPY",
        "stripe_payment_intent_id": "pi_1",
    }
    paid = payment_event(InvoiceEffect.MARK_PAID, outcome, now)
    assert paid is not None
    assert (paid.event_type, paid.org_id, paid.created_at, paid.data) == (
        EventType.PAYMENT_SUCCEEDED,
        "acme",
        now,
        common,
    )
    failed = payment_event(InvoiceEffect.PAST_DUE, outcome, now)
    assert failed is not None
    assert (failed.event_type, failed.org_id) == (EventType.PAYMENT_FAILED, "acme")
    assert failed.data == common | {
        "failure": "Your card was declined.",
        "failure_code": "card_declined",
    }
    refund = payment_event(InvoiceEffect.REFUND_DUE, outcome, now)
    assert refund is not None
    assert (refund.event_type, refund.org_id, refund.data) == (
        EventType.PAYMENT_REFUND_DUE,
        None,  # the operator's
        common,
    )
    assert payment_event(InvoiceEffect.NONE, outcome, now) is None
    assert paid.event_id == event_id(EventType.PAYMENT_SUCCEEDED, "pay_1")
    again = payment_event(InvoiceEffect.MARK_PAID, outcome, now.replace(hour=10))
    assert again is not None
    assert again.event_id == paid.event_id  # the same happening, however often applied
    assert len({paid.event_id, failed.event_id, refund.event_id}) == 3


def test_a_retry_is_due_on_schedule_or_at_once_on_a_new_card() -> None:
    failed = datetime(2026, 12, 1, 9, tzinfo=UTC)
    schedule = (1, 3)
    day = timedelta(days=1)
    assert not retry_due(failed, 0, schedule, failed + day - timedelta(seconds=1), new_card=False)
    assert retry_due(failed, 0, schedule, failed + day, new_card=False)
    assert not retry_due(failed, 1, schedule, failed + 2 * day, new_card=False)
    assert retry_due(failed, 1, schedule, failed + 3 * day, new_card=False)
    assert not retry_due(failed, 2, schedule, failed + 300 * day, new_card=False)  # spent
    assert retry_due(failed, 2, schedule, failed, new_card=True)  # a new card: at once
    assert retry_due(failed, 0, (), failed, new_card=True)
    assert not retry_due(failed, 0, (), failed + day, new_card=False)


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
