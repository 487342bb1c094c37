"""Payments as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

WebhookOutcome = Literal[
    "mark_paid",
    "past_due",
    "refund_due",
    "none",
    "card_added",
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
        "org's default, and a failed invoice is tried again at once), `ignored` (a type the "
        "kernel does not act on), `unknown_payment` / `unknown_customer` (a PaymentIntent or "
        "customer the kernel did not make)."
    )
