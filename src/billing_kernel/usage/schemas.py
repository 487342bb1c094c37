"""Usage batches as the API takes and answers them."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    Field,
)

from billing_kernel.common.validation import (
    MAX_EVENT_QUANTITY,
    MAX_PROPERTIES,
    MAX_PROPERTIES_LENGTH,
)
from billing_kernel.usage.rules import (
    RecordStatus,
    StoredEvent,
)
from billing_kernel.web.schemas import (
    EventTimeText,
    StrictBody,
    WholeNumber,
)


class UsageEventIn(StrictBody):
    """One usage event: a `quantity` of one `metric`, or a named `event` that each metric
    counting that name reads from its `properties` (see `listMetrics`). The JSON types are
    checked for the whole batch; the values (id lengths, quantity range, metric or event,
    event time, properties) are judged per event."""

    org_id: str = Field(description="The product's org id, 1-64 characters.")
    metric: str | None = Field(
        default=None,
        description="With `quantity`: the metric it counts toward.",
        examples=["tokens"],
    )
    quantity: WholeNumber | None = Field(
        default=None, description=f"With `metric`: a whole number from 0 to {MAX_EVENT_QUANTITY}."
    )
    event: str | None = Field(
        default=None,
        description="Instead of `metric` and `quantity`: the event's name (any text of 1 to "
        "255 characters without control characters, kept as sent). Every metric that counts "
        "it adds its amount: the sum of a property, or 1 for a count; an event no metric "
        "counts is refused (`unknown_event`), one whose amount property is missing or not a "
        "whole number is refused (`invalid_input`), one that no metric's filters admit is "
        "accepted and counts toward nothing.",
        examples=["llm.completion"],
    )
    idempotency_key: str = Field(
        description="1-255 characters, unique per org: a repeat counts once."
    )
    occurred_at: EventTimeText | None = Field(
        default=None,
        description="When the usage happened (decides the month); default: when received. "
        "At most 5 minutes ahead and 35 days back. Part of the payload: a repeat that gives "
        "it must give the same.",
    )
    observed_at: EventTimeText | None = Field(
        default=None,
        description="Instead of `occurred_at`, when the sender does not know when the usage "
        "happened, only when it saw it (an LLM response without a time of its own): it "
        "decides the month in the same window, but is not part of the payload, so a repeat "
        "seen at another time (a rerun, another process) is a `duplicate`, not a conflict.",
    )
    properties: dict[str, Any] | None = Field(
        default=None,
        max_length=MAX_PROPERTIES,
        description="What else the event carries, such as the model of an LLM call: a JSON "
        f"object of at most {MAX_PROPERTIES} keys (each 1-64 printable characters), "
        f"{MAX_PROPERTIES_LENGTH} characters as JSON; an event with other properties is "
        "refused (`invalid_input`). Kept with the event (part of its payload: a repeat "
        "must carry the same) so that usage can be grouped by one of them "
        "(`GET /orgs/{org_id}/usage?group_by=`).",
        examples=[{"model": "gpt-5", "feature": "summaries"}],
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
    not_counted_by: list[str] = Field(
        default_factory=list,
        description="The metrics that count the event's name and whose filters admit it, "
        "but that could not read their property from it (missing, or not a whole number in "
        "range), so did not count it; it counted toward the others. Each metric's "
        "`not_counted_this_month` adds these up.",
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
    metric: str | None = Field(
        description="The metric it counts toward; null: no metric counts it (an event the "
        "incumbents' protocols took of a name no metric counts, or one no metric's filters "
        "admit): kept, counted toward nothing, `quantity` 0."
    )
    quantity: int
    occurred_at: datetime = Field(description="When it happened: it decides the period.")
    received_at: datetime
    period: str = Field(description="The month it counts in, `YYYY-MM`.")
    invoice_id: str | None = Field(
        description="The invoice that billed it; null until its month's invoice is made."
    )
    properties: dict[str, Any] | None = Field(description="As sent; null for none.")
    event: str | None = Field(
        default=None,
        description="The event's name, for one sent as `event`; null for a `metric` and "
        "`quantity`.",
    )
    changed_repeats: int = Field(
        default=0,
        description="How often its idempotency key was sent again with another payload "
        "through a protocol that answers that as a duplicate (OpenMeter's, Polar's): counted "
        "once, as first sent. The kernel's own API refuses such a repeat "
        "(`idempotency_conflict`).",
    )
    last_changed_repeat_at: datetime | None = Field(
        default=None, description="When the last of those repeats was received."
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
            properties=None if event.properties is None else json.loads(event.properties),
            event=event.event,
            changed_repeats=event.changed_repeats,
            last_changed_repeat_at=event.last_changed_repeat_at,
        )
