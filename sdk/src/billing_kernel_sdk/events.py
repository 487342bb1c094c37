"""The SDK's event record: compact while queued or spooled, a dict on the wire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


class Event(NamedTuple):
    org_id: str
    metric: str
    quantity: int
    idempotency_key: str
    occurred_us: int
    """Event time in whole microseconds since the Unix epoch: exact, and cheap to stamp."""

    def wire(self) -> dict[str, Any]:
        """The event as `POST /api/v1/usage/events` takes it."""
        return {
            "org_id": self.org_id,
            "metric": self.metric,
            "quantity": self.quantity,
            "idempotency_key": self.idempotency_key,
            "occurred_at": occurred_at(self.occurred_us).isoformat(),
        }


def occurred_at(micros: int) -> datetime:
    return EPOCH + micros * MICROSECOND


def to_micros(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (ValueError for a naive one)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("occurred_at must be timezone-aware")
    return (moment - EPOCH) // MICROSECOND
