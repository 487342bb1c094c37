"""Quota checks as the API takes and answers them."""

from __future__ import annotations

from pydantic import (
    Field,
)

from billing_kernel.common.validation import MAX_EVENT_QUANTITY
from billing_kernel.quota.rules import Enforcement
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
    enforcement: Enforcement
