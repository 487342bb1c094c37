"""Quota checks as the API takes and answers them."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    Field,
)

from billing_kernel.common.validation import MAX_EVENT_QUANTITY
from billing_kernel.quota.rules import Enforcement, Reason
from billing_kernel.web.schemas import (
    FromDomain,
    StrictBody,
    WholeNumber,
)


class CheckIn(StrictBody):
    metric: str = Field(examples=["tokens"])
    amount: WholeNumber = Field(
        default=1, ge=0, le=MAX_EVENT_QUANTITY, description="How much more the org would use."
    )


class CheckOut(FromDomain):
    metric: str
    requested: int
    used: int
    limit: int | None
    remaining: int | None
    soft_limit_exceeded: bool = Field(description="Usage is already beyond the limit.")
    would_exceed: bool = Field(description="Usage plus the amount would be beyond the limit.")
    allowed: bool = Field(description="Always true while limits are soft.")
    reason: Reason = Field(
        description="Why, as a stable code: `within_limit` (the request fits, or the metric is "
        "unlimited) or `soft_limit_exceeded` (it takes usage beyond a soft limit: overage)."
    )
    message: str = Field(
        description="The decision in plain words, for the person using the product.",
        examples=["Acme has used 250,000 of the 1,000,000 tokens included in Starter this month."],
    )
    resets_at: datetime = Field(
        description="When the period ends and usage starts again from zero (UTC)."
    )
    enforcement: Enforcement
