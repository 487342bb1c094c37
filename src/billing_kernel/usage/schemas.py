"""Usage batches as the API takes and answers them."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.common.validation import MAX_EVENT_QUANTITY
from billing_kernel.usage.rules import RecordStatus, StoredEvent
from billing_kernel.web.schemas import (
    DateTimeText,
    StrictBody,
    WholeNumber,
)


class UsageEventIn(StrictBody):
    """One usage event. The JSON types are checked for the whole batch; the values (id
    lengths, quantity range, metric, event time) are judged per event."""

    org_id: str = Field(description="The product's org id, 1-64 characters.")
    metric: str = Field(examples=["tokens"])
    quantity: WholeNumber = Field(description=f"A whole number from 0 to {MAX_EVENT_QUANTITY}.")
    idempotency_key: str = Field(
        description="1-255 characters, unique per org: a repeat counts once."
    )
    occurred_at: DateTimeText | None = Field(
        default=None,
        description="When the usage happened (decides the month); default: when received. "
        "At most 5 minutes ahead and 35 days back.",
    )


MAX_BATCH = 1000


class UsageBatchIn(StrictBody):
    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventError(BaseModel):
    code: str
    detail: str


MAX_ECHO = 300
"""Echoed ids are cut to this many characters (a valid one is at most 255)."""


class EventResultOut(BaseModel):
    index: int = Field(description="Position of the event in the request.")
    org_id: str = Field(description=f"As sent (cut to {MAX_ECHO} characters).")
    idempotency_key: str = Field(description=f"As sent (cut to {MAX_ECHO} characters).")
    status: RecordStatus = Field(description="accepted, duplicate or refused.")
    error: EventError | None = Field(default=None, description="Why it was refused.")
    created_org: bool = Field(
        default=False,
        description="The org did not exist and this event created it (trial on the default "
        "plan; BILLING_AUTO_CREATE_ORGS). True on the org's first event only. A surprise here "
        "is usually a mistyped org id.",
    )


class UsageBatchOut(BaseModel):
    accepted: int
    duplicates: int
    refused: int
    orgs_created: int = Field(description="Orgs this batch created (see `created_org`).")
    results: list[EventResultOut]


class UsageEventOut(BaseModel):
    """A usage event as the kernel keeps it."""

    idempotency_key: str
    metric: str
    quantity: int
    occurred_at: datetime = Field(description="When it happened: it decides the period.")
    received_at: datetime
    period: str = Field(description="The month it counts in, `YYYY-MM`.")
    invoice_id: str | None = Field(
        description="The invoice that billed it; null until its month's invoice is made."
    )

    @classmethod
    def of(cls, event: StoredEvent) -> UsageEventOut:
        return cls(
            idempotency_key=event.idempotency_key,
            metric=event.metric,
            quantity=event.quantity,
            occurred_at=event.occurred_at,
            received_at=event.received_at,
            period=f"{event.occurred_at:%Y-%m}",
            invoice_id=event.invoice_id,
        )
