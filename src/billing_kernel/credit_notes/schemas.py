"""Credit notes as the API takes and shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from billing_kernel.credit_notes.rules import CreditNote
from billing_kernel.web.schemas import MoneyText, StrictBody, Text


class CreditLineIn(StrictBody):
    line: int = Field(ge=1, le=10_000, description="The invoice line's `number`.")
    amount: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,12}(\.[0-9]{1,3})?$",
        description="How much of it to give back, a decimal amount as a string (above zero, "
        "no finer than the currency's smallest unit); left out: all that is left of it.",
        examples=["10.00"],
    )


class CreditNoteIn(StrictBody):
    reason: Annotated[Text, Field(min_length=1, max_length=500)] = Field(
        examples=["the outage of 3 May: tokens refunded"]
    )
    lines: list[CreditLineIn] | None = Field(
        default=None,
        min_length=1,
        max_length=1_000,
        description="The lines to credit, each named once; left out: all that is left of the "
        "invoice (every line).",
    )


class CreditLineOut(BaseModel):
    line: int = Field(description="The invoice line's `number`.")
    description: str
    amount: MoneyText


class CreditNoteOut(BaseModel):
    """A paid invoice corrected: money given back, through Stripe, to the card it came from,
    or, paid outside Stripe, kept as a balance for the org's next invoices."""

    credit_note_id: str
    number: str = Field(description="Gap-free across the deployment: CN-000001, ...")
    org_id: str
    invoice_id: str
    reason: str
    amount: MoneyText
    currency: str
    lines: list[CreditLineOut]
    payment_id: str | None = Field(
        description="The payment it gives money back from; null for one kept as a balance."
    )
    refund_status: Literal["pending", "refunded", "failed", "balance"] = Field(
        description="`pending`: the worker has not yet heard Stripe (or Stripe is deciding); "
        "`refunded`; `failed`: Stripe would not (its words in `refund_failure`); `balance`: "
        "the invoice was paid outside Stripe, so the money is kept as a credit balance that "
        "the org's next invoices draw (a `credit_applied` line)."
    )
    stripe_refund_id: str | None
    refund_failure: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, note: CreditNote) -> CreditNoteOut:
        return cls(
            credit_note_id=note.credit_note_id,
            number=note.number,
            org_id=note.org_id,
            invoice_id=note.invoice_id,
            reason=note.reason,
            amount=note.amount,
            currency=note.currency,
            lines=[
                CreditLineOut(line=line.number, description=line.description, amount=line.amount)
                for line in note.lines
            ],
            payment_id=note.payment_id,
            refund_status=note.status.value,
            stripe_refund_id=note.stripe_refund_id,
            refund_failure=note.failure_message,
            created_at=note.created_at,
            updated_at=note.updated_at,
        )


class CreditNoteListOut(BaseModel):
    data: list[CreditNoteOut] = Field(description="First to last.")
