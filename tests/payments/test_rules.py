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
    PAY_NOW_LIFETIME,
    PAY_NOW_MARGIN,
    InvoiceEffect,
    InvoiceState,
    Outcome,
    Payment,
    PaymentStatus,
    attempt_key,
    card_needed_event,
    checkout_key,
    customer_key,
    dunning_attempts,
    from_minor_units,
    invoice_effect,
    minor_exponent,
    minor_units,
    moved,
    next_retry,
    open_pay_now,
    pay_now_offered,
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
    assert checkout_key("inv_1", 2) == "invoice:inv_1:attempt:2:checkout"
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
    assert moved(P.PENDING, P.CANCELED) is P.CANCELED  # a pay-now page expired unpaid
    assert moved(P.CANCELED, P.SUCCEEDED) is P.SUCCEEDED  # money is money, however late
    for final in (P.PROCESSING, P.FAILED, P.SUCCEEDED, P.PENDING, P.CANCELED):
        assert moved(P.SUCCEEDED, final) is None
    for stale in (P.PENDING, P.PROCESSING, P.FAILED, P.CANCELED):
        assert moved(P.FAILED, stale) is None
        assert moved(P.CANCELED, stale) is None
    assert moved(P.PROCESSING, P.CANCELED) is None  # only a page that took nothing expires
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
        "acme",  # about the org, for the operators
        common,
    )
    assert refund.for_operators
    assert not paid.for_operators
    assert not failed.for_operators
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


NOW = datetime(2026, 12, 3, 9, tzinfo=UTC)


def tried(status: PaymentStatus, *, page_until: datetime | None = None, n: int = 1) -> Payment:
    return Payment(
        f"pay_{n}", "inv_1", "acme", n, status, Decimal("49.75"), "USD", None, None, None, None,
        NOW, NOW, checkout_expires_at=page_until,
    )  # fmt: skip


def test_a_pay_now_page_left_unpaid_is_not_counted_by_dunning() -> None:
    failed, left = tried(P.FAILED), tried(P.CANCELED, page_until=NOW, n=2)
    assert dunning_attempts([failed, left, tried(P.FAILED, n=3)]) == [failed, tried(P.FAILED, n=3)]
    assert dunning_attempts([left]) == []
    assert (failed.paid_now, left.paid_now) == (False, True)


def test_a_pay_now_page_is_handed_out_again_until_near_its_end() -> None:
    until = NOW + PAY_NOW_LIFETIME
    page = tried(P.PENDING, page_until=until)
    assert timedelta(hours=1) == PAY_NOW_LIFETIME
    assert open_pay_now([page], NOW) is page
    assert open_pay_now([page], until - PAY_NOW_MARGIN - timedelta(seconds=1)) is page
    assert open_pay_now([page], until - PAY_NOW_MARGIN) is None  # a new one is made
    assert open_pay_now([page, tried(P.FAILED, n=2)], NOW) is None  # not the last
    assert open_pay_now([tried(P.PENDING)], NOW) is None  # a charge of the card on file
    assert open_pay_now([tried(P.SUCCEEDED, page_until=until)], NOW) is None  # paid on it
    assert open_pay_now([], NOW) is None


def test_pay_now_is_offered_where_waiting_would_not_do() -> None:
    def offered(attempts: list[Payment], has_card: bool = True, **invoice: object) -> bool:
        status = str(invoice.get("status", "open"))
        total = Decimal(str(invoice.get("total", "49.75")))
        return pay_now_offered(status, total, attempts, has_card)

    assert offered([], has_card=False)  # waiting for a card
    assert not offered([])  # the card on file is about to be charged
    assert offered([tried(P.FAILED)])  # declined
    assert offered([tried(P.CANCELED, page_until=NOW)])  # a page left unpaid
    assert offered([tried(P.PENDING, page_until=NOW + PAY_NOW_LIFETIME)])  # its page, again
    assert offered([tried(P.PENDING, page_until=NOW)])  # near its end: replaced
    for under_way in (P.PENDING, P.PROCESSING, P.SUCCEEDED):
        assert not offered([tried(P.FAILED), tried(under_way, n=2)])
    assert not offered([], has_card=False, status="paid")
    assert not offered([tried(P.FAILED)], status="void")
    assert not offered([], has_card=False, total="0")
    assert offered([], has_card=False, total="0.01")
