"""Payments as the API shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from billing_kernel.payments.rules import Card, Payment
from billing_kernel.web.schemas import MoneyText

WebhookOutcome = Literal[
    "mark_paid",
    "past_due",
    "refund_due",
    "none",
    "card_added",
    "card_removed",
    "duplicate",
    "ignored",
    "unknown_payment",
    "unknown_customer",
]


class WebhookOut(BaseModel):
    received: Literal[True] = True
    outcome: WebhookOutcome = Field(
        description="What applying the event did: to the invoice of the attempt it reports "
        "on (`mark_paid`, `past_due`: the org, `refund_due`: money came in for an invoice "
        "void or paid otherwise, `none`: old news), or `duplicate` (this event id was "
        "applied before), `card_added` (a Checkout in setup mode completed: the card is the "
        "org's default, and a failed invoice is tried again at once; also `customer.updated` with "
        "a default card), `card_removed` (`customer.updated` without one), `ignored` (a type the "
        "kernel does not act on), `unknown_payment` / `unknown_customer` (a PaymentIntent or "
        "customer the kernel did not make)."
    )


class CardOut(BaseModel):
    brand: str = Field(examples=["visa"])
    last4: str = Field(examples=["4242"])
    exp_month: int
    exp_year: int

    @classmethod
    def of(cls, card: Card) -> CardOut:
        return cls(
            brand=card.brand, last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year
        )


class PaymentMethodOut(BaseModel):
    collecting: bool = Field(
        description="Whether the deployment collects invoices through Stripe; if not, they "
        "are paid by other means and marked paid by the operator."
    )
    card: CardOut | None = Field(
        description="The card each invoice is charged to, as Stripe describes it (never its "
        "number); null: none on file, and invoices wait for one."
    )


class PaymentOut(BaseModel):
    """One attempt to collect an invoice: one PaymentIntent at Stripe."""

    payment_id: str
    invoice_id: str
    attempt: int = Field(description="1 for the first; each retry (dunning, a new card) adds one.")
    kind: Literal["card", "pay_now"] = Field(
        description="`card`: the card on file charged by the kernel; `pay_now`: paid by the "
        "org's owner on Stripe's Checkout page (`createPayNowPage`)."
    )
    status: Literal["pending", "processing", "succeeded", "failed", "canceled"] = Field(
        description="`pending`: Stripe not yet heard (or, paid now, its page still open); "
        "`processing`: Stripe deciding; `succeeded`, `failed`: Stripe's answer; `canceled`: "
        "a pay-now page left unpaid until it expired (nothing charged)."
    )
    amount: MoneyText
    currency: str
    stripe_payment_intent_id: str | None
    failure_code: str | None = Field(description="Stripe's code: `card_declined`, ...")
    failure_message: str | None = Field(description="Stripe's words, for people.")
    pay_now_until: datetime | None = Field(
        description="Paid now: when its page stops taking payment (null for a card charge)."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, payment: Payment) -> PaymentOut:
        return cls(
            payment_id=payment.payment_id,
            invoice_id=payment.invoice_id,
            attempt=payment.attempt,
            kind="pay_now" if payment.paid_now else "card",
            status=payment.status.value,
            pay_now_until=payment.checkout_expires_at,
            amount=payment.amount,
            currency=payment.currency,
            stripe_payment_intent_id=payment.stripe_payment_intent_id,
            failure_code=payment.failure_code,
            failure_message=payment.failure_message,
            created_at=payment.created_at,
            updated_at=payment.updated_at,
        )


class PaymentListOut(BaseModel):
    data: list[PaymentOut] = Field(description="First attempt to last.")


class PayNowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_url: str | None = Field(
        default=None,
        max_length=2000,
        pattern=r"^https?://[^\s]+$",
        description="Where Stripe sends the payer back, with `paid=invoice` (or "
        "`paid=canceled`) added to its query; the kernel's billing page when left out.",
        examples=["https://app.example.com/billing"],
    )


class PayNowOut(BaseModel):
    url: str = Field(description="Stripe's Checkout page for the invoice: send the payer there.")
    attempt: PaymentOut = Field(description="The attempt the page is (`kind: pay_now`).")
