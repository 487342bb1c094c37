"""Events: what happened, as every channel delivers it, each with an id that is the same
however often it is written or sent. A capability decides that something happened (alerts a
crossing, invoices a close that failed) and records its event; the event log keeps it, and
notifications deliver it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

_EVENT_IDS = uuid.UUID("5d1f6c9e-7a43-4f0b-9a43-2c1b0e7d8a61")


class EventType(StrEnum):
    THRESHOLD_CROSSED = "usage.threshold_crossed"
    THRESHOLD_RESOLVED = "usage.threshold_resolved"
    QUOTA_BLOCKED = "quota.blocked"
    INVOICE_CLOSE_FAILED = "invoice.close_failed"
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUND_DUE = "payment.refund_due"
    PAYMENT_CARD_NEEDED = "payment.card_needed"


FOR_OPERATORS = frozenset({EventType.INVOICE_CLOSE_FAILED, EventType.PAYMENT_REFUND_DUE})
"""The operators' events: each about an org (whose `org_id` it carries) but for the people
who run the deployment, so delivered to deployment-wide endpoints only and never shown to the
org (its endpoints, Slack, people, event log or delivery log)."""


def event_id(event_type: EventType, *parts: str | int) -> str:
    """The id of the event of `event_type` about what `parts` name (written as text, in
    order): the same for the same happening however often it is written or sent."""
    name = "|".join([str(event_type), *map(str, parts)])
    return "evt_" + uuid.uuid5(_EVENT_IDS, name).hex


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened, as every channel delivers it."""

    event_id: str
    event_type: EventType
    org_id: str
    """The org it is about (the operators' events too: see FOR_OPERATORS)."""
    created_at: datetime
    data: dict[str, object]

    @property
    def for_operators(self) -> bool:
        return self.event_type in FOR_OPERATORS

    def payload(self) -> dict[str, object]:
        """The documented JSON body: `type`, `id`, `timestamp`, `data`."""
        return {
            "type": str(self.event_type),
            "id": self.event_id,
            "timestamp": self.created_at.isoformat().replace("+00:00", "Z"),
            "data": self.data,
        }
