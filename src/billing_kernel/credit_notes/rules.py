"""Credit notes' pure rules: what a credit note on a paid invoice may credit (the whole of
what is left, or chosen lines, never more than a line billed or the invoice came to, in the
currency's smallest unit), its number, how its refund moves, and what the records must say
of each other (`credit_notes verify`). Standard library and pure rules only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from billing_kernel.common.money import money_text
from billing_kernel.errors import InvalidInput, NothingToCredit
from billing_kernel.payments.rules import minor_units

ZERO = Decimal(0)


def credit_note_number(sequence: int) -> str:
    """ "CN-000001": credit notes are numbered in one sequence, as invoices are."""
    if sequence < 1:
        raise ValueError(f"credit notes are numbered from 1, not {sequence}")
    return f"CN-{sequence:06d}"


@dataclass(frozen=True, slots=True)
class BilledLine:
    """An invoice's line as a credit note reads it."""

    number: int
    description: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class CreditLine:
    """How much of one invoice line a credit note gives back."""

    number: int
    description: str
    amount: Decimal


def credit_lines(
    billed: Sequence[BilledLine],
    credited: Mapping[int, Decimal],
    asked: Sequence[tuple[int, Decimal | None]] | None,
    currency: str,
) -> list[CreditLine]:
    """The lines of a credit note on an invoice whose lines are `billed`, `credited` by
    earlier credit notes as given (by line number). `asked` None: all that is left, every
    line (a credit line among them taken back as billed, so the note comes to what is left
    of the invoice's total). Otherwise the lines asked, each for an amount or, None, all
    that is left of it: only charges (a line above zero), each above zero, in the
    currency's smallest unit, no more than is left of it, and together no more than is
    left of the invoice's total. InvalidInput naming the line otherwise; NothingToCredit
    when all is credited already."""
    left = {line.number: line.amount - credited.get(line.number, ZERO) for line in billed}
    left_total = sum(left.values(), ZERO)
    if left_total <= 0:
        raise NothingToCredit("the invoice is credited in full already")
    if asked is None:
        return [
            CreditLine(b.number, b.description, left[b.number]) for b in billed if left[b.number]
        ]
    if not asked:
        raise InvalidInput("name at least one line to credit, or none for all", field="lines")
    named = [number for number, _ in asked]
    if len(set(named)) != len(named):
        raise InvalidInput(f"name each line once, not {sorted(named)}", field="lines")
    by_number = {line.number: line for line in billed}
    lines: list[CreditLine] = []
    for number, amount in sorted(asked, key=lambda pair: pair[0]):
        field = f"lines.{number}"
        line = by_number.get(number)
        if line is None:
            raise InvalidInput(f"the invoice has no line {number}", field=field)
        if line.amount <= 0:
            raise InvalidInput(
                f"line {number} is not a charge ({line.amount}): only charges are credited",
                field=field,
            )
        if amount is None:
            amount = left[number]
            if amount <= 0:
                raise InvalidInput(f"line {number} is credited in full already", field=field)
        elif amount <= 0:
            raise InvalidInput(
                f"line {number}: credit an amount above zero, not {amount}", field=field
            )
        try:
            minor_units(amount, currency)
        except InvalidInput as finer:  # finer than the currency holds
            raise InvalidInput(f"line {number}: {finer.message}", field=field) from None
        if amount > left[number]:
            raise InvalidInput(
                f"line {number} has {left[number]} left to credit, not {amount}", field=field
            )
        lines.append(CreditLine(number, line.description, amount))
    total = sum((line.amount for line in lines), ZERO)
    if total > left_total:
        raise InvalidInput(
            f"the invoice has {left_total} left to credit (its own credits counted), not {total}",
            field="lines",
        )
    return lines


class RefundStatus(StrEnum):
    """A credit note's refund. `pending`: written, Stripe not yet heard (or deciding);
    `refunded` and `failed`: Stripe's answer; `balance`: not refunded (the invoice was paid
    outside Stripe), kept as a credit balance the org's next invoices draw."""

    PENDING = "pending"
    REFUNDED = "refunded"
    FAILED = "failed"
    BALANCE = "balance"


_MOVES: dict[RefundStatus, frozenset[RefundStatus]] = {
    RefundStatus.PENDING: frozenset({RefundStatus.REFUNDED, RefundStatus.FAILED}),
    # A refund Stripe reported failed may still be reported succeeded (a late, truer
    # report); a refund made is final.
    RefundStatus.FAILED: frozenset({RefundStatus.REFUNDED}),
    RefundStatus.REFUNDED: frozenset(),
    RefundStatus.BALANCE: frozenset(),
}


def refund_moved(current: RefundStatus, reported: RefundStatus) -> RefundStatus | None:
    """The refund's new status once Stripe reports `reported`; None when the report changes
    nothing (a repeat, or older news)."""
    return reported if reported in _MOVES[current] else None


@dataclass(frozen=True, slots=True)
class CreditNote:
    """A credit note as recorded."""

    credit_note_id: str
    number: str
    sequence: int
    org_id: str
    invoice_id: str
    reason: str
    amount: Decimal
    currency: str
    lines: tuple[CreditLine, ...]
    payment_id: str | None
    """The payment it gives money back from (the one that paid the invoice); None for one
    kept as a balance."""
    status: RefundStatus
    stripe_refund_id: str | None
    failure_message: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CreditedInvoice:
    """An invoice as credit notes are checked against it."""

    invoice_id: str
    number: str
    status: str
    total: Decimal
    credited: Decimal
    paid_by: str | None
    lines: tuple[BilledLine, ...]


def credit_disagreements(
    invoices: Sequence[CreditedInvoice], notes: Sequence[CreditNote]
) -> list[str]:
    """What the records of credit notes say that cannot all be true: a note whose lines do
    not add up to it, on an invoice not paid, or not refunded from the payment that paid
    it; an invoice whose recorded credit is not the sum of its notes, is more than it came
    to, or one of whose lines is credited beyond what it billed; numbers with gaps; a
    note `refunded` without Stripe's refund."""
    found: list[str] = []
    by_invoice: dict[str, list[CreditNote]] = {}
    for note in notes:
        by_invoice.setdefault(note.invoice_id, []).append(note)
        if sum((line.amount for line in note.lines), ZERO) != note.amount:
            found.append(f"{note.number}: its lines do not add up to {money_text(note.amount)}")
        if note.status is RefundStatus.REFUNDED and note.stripe_refund_id is None:
            found.append(f"{note.number} is refunded without a Stripe refund")
    for expected, note in enumerate(sorted(notes, key=lambda n: n.sequence), 1):
        if note.sequence != expected:
            found.append(f"{note.number}: numbered {note.sequence}, {expected} expected (a gap)")
    known = {invoice.invoice_id: invoice for invoice in invoices}
    for invoice_id in sorted(set(by_invoice) - set(known)):
        found.append(f"credit notes name invoice {invoice_id}, which does not exist")
    for invoice in invoices:
        on_it = by_invoice.get(invoice.invoice_id, [])
        total = sum((note.amount for note in on_it), ZERO)
        if total != invoice.credited:
            found.append(
                f"{invoice.number}: credited {money_text(invoice.credited)} recorded, its "
                f"credit notes come to {money_text(total)}"
            )
        if total > invoice.total:
            found.append(
                f"{invoice.number}: credited {money_text(total)}, more than its "
                f"{money_text(invoice.total)}"
            )
        if on_it and invoice.status != "paid":
            found.append(f"{invoice.number} is {invoice.status} and has credit notes")
        for note in on_it:
            if note.status is RefundStatus.BALANCE:
                if note.payment_id is not None or invoice.paid_by is not None:
                    found.append(
                        f"{note.number} is kept as a balance, but {invoice.number} was paid "
                        "through Stripe"
                    )
            elif note.payment_id is None or note.payment_id != invoice.paid_by:
                found.append(
                    f"{note.number} refunds {note.payment_id}, which did not pay {invoice.number}"
                )
        per_line: dict[int, Decimal] = {}
        for note in on_it:
            for line in note.lines:
                per_line[line.number] = per_line.get(line.number, ZERO) + line.amount
        for billed in invoice.lines:
            given = per_line.get(billed.number, ZERO)
            # A charge is credited up to what it billed; a credit line of the invoice only
            # taken back as billed, by a note for all that was left.
            if not min(ZERO, billed.amount) <= given <= max(ZERO, billed.amount):
                found.append(
                    f"{invoice.number} line {billed.number}: credited {money_text(given)} of "
                    f"{money_text(billed.amount)}"
                )
    return found
