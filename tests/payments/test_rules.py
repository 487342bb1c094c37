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
    InvoiceEffect,
    InvoiceState,
    Outcome,
    PaymentStatus,
    attempt_key,
    card_needed_event,
    customer_key,
    from_minor_units,
    invoice_effect,
    minor_exponent,
    minor_units,
    moved,
    next_retry,
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


def test_an_invoice_waiting_for_a_card_is_told_once_as_the_orgs_event() -> None:
    now = datetime(2026, 12, 3, 9, tzinfo=UTC)
    needed = card_needed_event("acme", "inv_1", "INV-000007", Decimal("49.75"), "USD", now)
    assert (needed.event_id, needed.event_type, needed.org_id, needed.created_at) == (
        event_id(EventType.PAYMENT_CARD_NEEDED, "inv_1"),
        EventType.PAYMENT_CARD_NEEDED,
        "acme",
        now,
    )
    assert needed.data == {
        "org_id": "acme",
        "invoice_id": "inv_1",
        "invoice_number": "INV-000007",
        "amount": "49.75",
        "currency": "USD",
    }
    other = card_needed_event("acme", "inv_2", "INV-000008", Decimal("49.75"), "USD", now)
    assert other.event_id != needed.event_id
