"""Credit notes' pure rules: what a credit note may credit, its number, how its refund
moves, and what the records must say of each other."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from billing_kernel.credit_notes.rules import (
    BilledLine,
    CreditedInvoice,
    CreditLine,
    CreditNote,
    RefundStatus,
    credit_disagreements,
    credit_lines,
    credit_note_number,
    refund_moved,
)
from billing_kernel.errors import InvalidInput, NothingToCredit

D = Decimal
R = RefundStatus
BILLED = [
    BilledLine(1, "Starter, May", D("49.00")),
    BilledLine(2, "Tokens over", D("10.50")),
    BilledLine(3, "Unused time on Free", D("-5.00")),
]  # comes to 54.50


def test_credit_notes_are_numbered_in_one_sequence() -> None:
    assert credit_note_number(1) == "CN-000001"
    assert credit_note_number(123456) == "CN-123456"
    with pytest.raises(ValueError, match="numbered from 1, not 0"):
        credit_note_number(0)


def test_all_that_is_left_is_every_line_and_comes_to_what_is_left_of_the_total() -> None:
    whole = credit_lines(BILLED, {}, None, "USD")
    assert whole == [
        CreditLine(1, "Starter, May", D("49.00")),
        CreditLine(2, "Tokens over", D("10.50")),
        CreditLine(3, "Unused time on Free", D("-5.00")),
    ]
    assert sum(line.amount for line in whole) == D("54.50")
    rest = credit_lines(BILLED, {2: D("10.50"), 1: D("9.00")}, None, "USD")
    assert rest == [
        CreditLine(1, "Starter, May", D("40.00")),
        CreditLine(3, "Unused time on Free", D("-5.00")),
    ]  # line 2 is credited in full: left out
    with pytest.raises(NothingToCredit, match=r"^the invoice is credited in full already$"):
        credit_lines(BILLED, {1: D("49.00"), 2: D("10.50")}, None, "USD")
    with pytest.raises(NothingToCredit):  # 5.00 of line 2 left, less line 3's 5.00
        credit_lines(BILLED, {1: D("49.00"), 2: D("5.50")}, None, "USD")


def test_lines_named_are_credited_up_to_what_is_left_of_each() -> None:
    assert credit_lines(BILLED, {}, [(2, None)], "USD") == [
        CreditLine(2, "Tokens over", D("10.50"))
    ]
    assert credit_lines(BILLED, {2: D("0.50")}, [(2, None), (1, D("0.01"))], "USD") == [
        CreditLine(1, "Starter, May", D("0.01")),
        CreditLine(2, "Tokens over", D("10.00")),
    ]
    assert credit_lines(BILLED, {}, [(1, D("49"))], "USD") == [CreditLine(1, "Starter, May", D(49))]


@pytest.mark.parametrize(
    ("credited", "asked", "message", "field"),
    [
        ({}, {4: None}, "the invoice has no line 4", "lines.4"),
        ({}, {3: None}, r"line 3 is not a charge \(-5.00\): only charges", "lines.3"),
        ({}, {1: D("0")}, "line 1: credit an amount above zero, not 0", "lines.1"),
        ({}, {1: D("-1")}, "line 1: credit an amount above zero, not -1", "lines.1"),
        ({}, {1: D("49.01")}, "line 1 has 49.00 left to credit, not 49.01", "lines.1"),
        ({1: D("40")}, {1: D("9.01")}, "line 1 has 9.00 left to credit, not 9.01", "lines.1"),
        ({2: D("10.50")}, {2: None}, "line 2 is credited in full already", "lines.2"),
        ({}, {1: D("1.005")}, "line 1: 1.005 USD has more decimal places than", "lines.1"),
        ({}, {}, "^name at least one line to credit, or none for all$", "lines"),
        (
            {},
            {1: None, 2: None},
            r"has 54.50 left to credit \(its own credits counted\), not 59.50",
            "lines",
        ),
    ],
)
def test_a_credit_beyond_what_was_billed_is_refused_naming_the_line(
    credited: dict[int, Decimal], asked: dict[int, Decimal | None], message: str, field: str
) -> None:
    with pytest.raises(InvalidInput, match=message) as refused:
        credit_lines(BILLED, credited, list(asked.items()), "USD")
    assert refused.value.details["field"] == field


def test_amounts_under_one_and_exactly_all_that_is_left_are_credited() -> None:
    small = [BilledLine(1, "Tokens over", D("0.50")), BilledLine(2, "Nothing over", D("0.00"))]
    assert credit_lines(small, {}, None, "USD") == [CreditLine(1, "Tokens over", D("0.50"))]
    assert credit_lines(small, {}, [(1, None)], "USD") == [CreditLine(1, "Tokens over", D("0.50"))]
    with pytest.raises(InvalidInput, match=r"line 2 is not a charge \(0.00\)"):
        credit_lines(small, {}, [(2, None)], "USD")
    exactly = credit_lines(BILLED, {}, [(1, D("49.00")), (2, D("5.50"))], "USD")
    assert sum(line.amount for line in exactly) == D("54.50")  # all that is left, by line


def test_each_line_is_named_once() -> None:
    with pytest.raises(InvalidInput, match=r"name each line once, not \[1, 1\]") as refused:
        credit_lines(BILLED, {}, [(1, D("1")), (1, D("2"))], "USD")
    assert refused.value.details["field"] == "lines"


def test_a_zero_decimal_currency_is_credited_in_whole_units() -> None:
    billed = [BilledLine(1, "Pro, May", D("4900"))]
    assert credit_lines(billed, {}, [(1, D("100"))], "JPY") == [CreditLine(1, "Pro, May", D(100))]
    with pytest.raises(InvalidInput, match="more decimal places"):
        credit_lines(billed, {}, [(1, D("0.5"))], "JPY")


def test_a_refund_moves_forward_only_and_refunded_is_final() -> None:
    assert refund_moved(R.PENDING, R.REFUNDED) is R.REFUNDED
    assert refund_moved(R.PENDING, R.FAILED) is R.FAILED
    assert refund_moved(R.FAILED, R.REFUNDED) is R.REFUNDED
    for stale in R:
        assert refund_moved(R.REFUNDED, stale) is None
    assert refund_moved(R.FAILED, R.FAILED) is None
    assert refund_moved(R.FAILED, R.PENDING) is None
    assert refund_moved(R.PENDING, R.PENDING) is None


AT = datetime(2026, 6, 3, tzinfo=UTC)


def note(
    sequence: int = 1,
    lines: tuple[CreditLine, ...] = (CreditLine(2, "Tokens over", D("10.50")),),
    *,
    amount: str = "10.50",
    payment: str | None = "pay_1",
    status: RefundStatus = R.REFUNDED,
    refund: str | None = "re_1",
) -> CreditNote:
    return CreditNote(
        f"cn_{sequence}", credit_note_number(sequence), sequence, "acme", "inv_1", "outage",
        D(amount), "USD", lines, payment, status, refund, None, AT, AT,
    )  # fmt: skip


def invoice(
    credited: str = "10.50", status: str = "paid", paid_by: str = "pay_1"
) -> CreditedInvoice:
    return CreditedInvoice(
        "inv_1", "INV-000001", status, D("54.50"), D(credited), paid_by, tuple(BILLED)
    )


def test_credit_notes_agree_with_their_invoice_or_say_how_they_do_not() -> None:
    assert credit_disagreements([invoice()], [note()]) == []
    assert credit_disagreements([invoice("0")], []) == []
    two = [note(), note(2, (CreditLine(1, "Starter, May", D("44.00")),), amount="44.00")]
    assert credit_disagreements([invoice("54.50")], two) == []
    assert credit_disagreements([invoice("11.00")], [note()]) == [
        "INV-000001: credited 11.00 recorded, its credit notes come to 10.50"
    ]
    assert credit_disagreements([invoice()], [note(amount="10.00")]) == [
        "CN-000001: its lines do not add up to 10.00",
        "INV-000001: credited 10.50 recorded, its credit notes come to 10.00",
    ]
    assert credit_disagreements([invoice()], [note(refund=None)]) == [
        "CN-000001 is refunded without a Stripe refund"
    ]
    assert credit_disagreements([invoice()], [note(refund=None, status=R.PENDING)]) == []
    assert credit_disagreements([invoice()], [note(payment="pay_2")]) == [
        "CN-000001 refunds pay_2, which did not pay INV-000001"
    ]
    assert credit_disagreements([invoice(status="open")], [note()]) == [
        "INV-000001 is open and has credit notes"
    ]
    assert credit_disagreements([invoice()], [note(2)]) == [
        "CN-000002: numbered 2, 1 expected (a gap)"
    ]
    assert credit_disagreements([], [note()]) == [
        "credit notes name invoice inv_1, which does not exist"
    ]
    assert credit_disagreements([invoice()], []) == [
        "INV-000001: credited 10.50 recorded, its credit notes come to 0.00"
    ]
    twice = [
        note(lines=(CreditLine(2, "Tokens over", D("6.00")),), amount="6.00"),
        note(2, (CreditLine(2, "Tokens over", D("5.00")),), amount="5.00"),
    ]
    assert credit_disagreements([invoice("11.00")], twice) == [
        "INV-000001 line 2: credited 11.00 of 10.50"
    ]
    small = CreditedInvoice(
        "inv_1", "INV-000001", "paid", D("0.50"), D("0.60"), "pay_1",
        (BilledLine(1, "Tokens over", D("0.50")),),
    )  # fmt: skip
    over_small = note(lines=(CreditLine(1, "Tokens over", D("0.60")),), amount="0.60")
    assert credit_disagreements([small], [over_small])[-1] == (
        "INV-000001 line 1: credited 0.60 of 0.50"
    )
    whole = (
        CreditLine(1, "Starter, May", D("49.00")),
        CreditLine(2, "Tokens over", D("10.50")),
        CreditLine(3, "Unused time on Free", D("-5.00")),
    )
    assert credit_disagreements([invoice("54.50")], [note(lines=whole, amount="54.50")]) == []
    wrong_way = (CreditLine(3, "Unused time on Free", D("5.00")),)
    assert credit_disagreements([invoice("5.00")], [note(lines=wrong_way, amount="5.00")]) == [
        "INV-000001 line 3: credited 5.00 of -5.00"
    ]
    beyond = (CreditLine(2, "Tokens over", D("11.00")),)
    assert credit_disagreements([invoice("11.00")], [note(lines=beyond, amount="11.00")]) == [
        "INV-000001 line 2: credited 11.00 of 10.50"
    ]
    over = (CreditLine(1, "Starter, May", D("49.00")), CreditLine(2, "Tokens over", D("10.50")))
    assert credit_disagreements([invoice("59.50")], [note(lines=over, amount="59.50")]) == [
        "INV-000001: credited 59.50, more than its 54.50"
    ]


def test_a_note_kept_as_a_balance_is_on_an_invoice_paid_outside_stripe() -> None:
    kept = note(payment=None, status=R.BALANCE, refund=None)
    by_hand = CreditedInvoice(
        "inv_1", "INV-000001", "paid", D("54.50"), D("10.50"), None, tuple(BILLED)
    )
    assert credit_disagreements([by_hand], [kept]) == []
    assert credit_disagreements([invoice()], [kept]) == [
        "CN-000001 is kept as a balance, but INV-000001 was paid through Stripe"
    ]
    assert credit_disagreements([by_hand], [note()]) == [
        "CN-000001 refunds pay_1, which did not pay INV-000001"
    ]
    assert refund_moved(R.BALANCE, R.REFUNDED) is None  # kept: never refunded after
    assert refund_moved(R.PENDING, R.BALANCE) is None
