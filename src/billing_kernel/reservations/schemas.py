"""Reservations as the API takes and answers them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from billing_kernel.common.validation import ID_PATTERN_TEXT, MAX_EVENT_QUANTITY, MAX_ID_LENGTH
from billing_kernel.quota.schemas import CheckOut, IdempotencyKey
from billing_kernel.reservations.rules import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    Reservation,
    ReservationStatus,
)
from billing_kernel.web.schemas import WHOLE, StrictBody

Units = Annotated[int, Field(ge=0, le=MAX_EVENT_QUANTITY), WHOLE]


class ReservationIn(StrictBody):
    """Units to hold against the org's limit for work whose size is known only afterwards."""

    org_id: str = Field(
        min_length=1, max_length=MAX_ID_LENGTH, pattern=ID_PATTERN_TEXT, examples=["acme"]
    )
    metric: str = Field(
        description="A metric of usage: `seats` follows membership and cannot be reserved.",
        examples=["tokens"],
        json_schema_extra={"not": {"const": "seats"}},
    )
    estimate: Units = Field(
        description="How many units to hold: the most the work is expected to use.",
        examples=[4_000],
    )
    idempotency_key: IdempotencyKey = Field(
        description="Unique per org, shared with usage events and consumes: a retry with the "
        "same key is answered with the same reservation. Its commit records its usage as a "
        "usage event under this key."
    )
    ttl_seconds: Annotated[int, Field(ge=1, le=MAX_TTL_SECONDS), WHOLE] = Field(
        default=DEFAULT_TTL_SECONDS,
        description="How long the units are held if the reservation is neither committed "
        "nor released; then they are given back by themselves.",
    )


class CommitIn(StrictBody):
    quantity: Units = Field(
        description="The usage the work turned out to be: recorded in full, even beyond "
        "the estimate or the limit (it happened).",
        examples=[3_127],
    )


class ReservationOut(BaseModel):
    id: str = Field(description="The reservation's id (`rsv_...`): commit or release it by it.")
    org_id: str
    metric: str
    idempotency_key: str
    estimate: int
    status: ReservationStatus = Field(
        description="`held` (its units count against the limit), `refused` (the decision "
        "refused it: nothing is held), `committed`, `released`, or `expired` (its TTL ended "
        "before it was settled; its units are no longer held)."
    )
    reserved_at: datetime
    expires_at: datetime
    committed_quantity: int | None = Field(description="The usage its commit recorded.")
    settled_at: datetime | None = Field(
        description="When it was committed, released or refused (or its expiry was noted)."
    )
    decision: CheckOut | None = Field(
        description="The quota decision that held or refused it: in the answer to the "
        "request that made it (and to its retries); null in other answers."
    )

    @classmethod
    def of(cls, r: Reservation, now: datetime, decision: CheckOut | None = None) -> ReservationOut:
        return cls(
            id=r.reservation_id,
            org_id=r.org_id,
            metric=r.metric,
            idempotency_key=r.idempotency_key,
            estimate=r.estimate,
            status=r.status_at(now),
            reserved_at=r.reserved_at,
            expires_at=r.expires_at,
            committed_quantity=r.committed_quantity,
            settled_at=r.settled_at,
            decision=decision,
        )
