"""The SDK's event record: compact while queued or spooled, a dict on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class Event(NamedTuple):
    org_id: str
    metric: str
    """The metric; for a named event, the event's name."""
    quantity: int
    """For a named event, unused (0): its metrics read its properties."""
    idempotency_key: str
    occurred_us: int
    """Event time in whole microseconds since the Unix epoch: exact, and cheap to stamp."""
    properties: dict[str, Any] | None = None
    named: bool = False
    """Sent as `event` with its properties, not as `metric` and `quantity`. (A spool line
    written before these fields existed reads back with their defaults.)"""
    observed: bool = False
    """The time is when the tracker saw the event, not when it happened: sent as
    `observed_at`, which the kernel does not compare on a repeat."""

    def wire(self) -> dict[str, Any]:
        """The event as `POST /api/v1/usage/events` takes it."""
        body: dict[str, Any] = {"org_id": self.org_id}
        if self.named:
            body["event"] = self.metric
        else:
            body["metric"], body["quantity"] = self.metric, self.quantity
        body["idempotency_key"] = self.idempotency_key
        body["observed_at" if self.observed else "occurred_at"] = occurred_at(
            self.occurred_us
        ).isoformat()
        if self.properties is not None:
            body["properties"] = self.properties
        return body


def occurred_at(micros: int) -> datetime:
    return EPOCH + micros * MICROSECOND


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (ValueError for a naive one)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("occurred_at must be timezone-aware")
    return (moment - EPOCH) // MICROSECOND
