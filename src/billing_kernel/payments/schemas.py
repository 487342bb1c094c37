"""Payments as the API shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

WebhookOutcome = Literal[
    "mark_paid", "past_due", "refund_due", "none", "duplicate", "ignored", "unknown_payment"
]


class WebhookOut(BaseModel):
    received: Literal[True] = True
    outcome: WebhookOutcome = Field(
        description="What applying the event did: to the invoice of the attempt it reports "
        "on (`mark_paid`, `past_due`: the org, `refund_due`: money came in for an invoice "
        "void or paid otherwise, `none`: old news), or `duplicate` (this event id was "
        "applied before), `ignored` (a type the kernel does not act on), `unknown_payment` "
        "(a PaymentIntent the kernel did not make)."
    )
