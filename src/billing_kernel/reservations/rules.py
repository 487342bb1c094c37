"""A reservation's lifecycle: held units, and how a commit or a release settles them.

    held ──commit(actual)──▶ committed   the actual usage is recorded, the hold given back
      │  ──release()──────▶ released    the hold is given back
      │  ──its TTL ends───▶ expired     the hold is given back by the next decision on it
    refused                              the quota decision refused it: nothing was held

An expired reservation can still be committed: the work it was made for happened, and its
usage is recorded like any usage event (never lost). A committed one stays committed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import IdempotencyConflict, InvalidInput, ReservationSettled

MAX_TTL_SECONDS = 86_400
"""A day: a hold longer than that would keep a limit's last units from everyone else."""
DEFAULT_TTL_SECONDS = 900
ID_PREFIX = "rsv_"
ID_PATTERN_TEXT = r"^rsv_[0-9a-f]{32}$"


class ReservationStatus(StrEnum):
    HELD = "held"
    """Its estimate is held against the limit (until it is settled or its TTL ends)."""
    REFUSED = "refused"
    """The quota decision refused it; nothing is held."""
    COMMITTED = "committed"
    """Its actual usage was recorded, and its hold given back."""
    RELEASED = "released"
    """Its hold was given back, with no usage recorded."""
    EXPIRED = "expired"
    """Its TTL ended before it was settled; its hold was given back."""


def new_reservation_id() -> str:
    return ID_PREFIX + secrets.token_hex(16)


def validate_ttl(seconds: object) -> timedelta:
    """A time to live in whole seconds, from 1 to a day, or InvalidInput."""
    if type(seconds) is not int or not 1 <= seconds <= MAX_TTL_SECONDS:
        raise InvalidInput(
            f"ttl_seconds must be a whole number from 1 to {MAX_TTL_SECONDS:,}",
            field="ttl_seconds",
        )
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    org_id: str
    idempotency_key: str
    """The key it was made with: also the key of the usage event its commit records."""
    metric: str
    estimate: int
    status: ReservationStatus
    """As stored: a hold past its TTL reads HELD until a decision gives it back."""
    reserved_at: datetime
    expires_at: datetime
    committed_quantity: int | None = None
    settled_at: datetime | None = None

    @property
    def period_start(self) -> date:
        """The period whose counter holds its units, and that its usage is recorded in."""
        return BillingPeriod.containing(self.reserved_at).key

    @property
    def holding(self) -> int:
        """The units it has on its counter now."""
        return self.estimate if self.status is ReservationStatus.HELD else 0

    def status_at(self, now: datetime) -> ReservationStatus:
        """Its status as callers see it at `now`: a hold whose TTL has ended is expired,
        whether or not its units have been given back yet."""
        if self.status is ReservationStatus.HELD and now >= self.expires_at:
            return ReservationStatus.EXPIRED
        return self.status


@dataclass(frozen=True, slots=True)
class Settlement:
    """What settling a reservation does: its status after, the units to give back from
    its counter's holds, and the usage to record (None: none). `changes` is False for a
    retry of a settlement already made: it writes nothing."""

    status: ReservationStatus
    release: int
    record: int | None
    changes: bool = True


def commit_of(reservation: Reservation, actual: int) -> Settlement:
    """Commit `actual` units of usage (more or fewer than the estimate): recorded in full,
    and the hold, if it is still on the counter, given back. A commit retried with the same
    amount changes nothing; with another, it is an IdempotencyConflict."""
    r = reservation
    if r.status is ReservationStatus.COMMITTED:
        if r.committed_quantity == actual:
            return Settlement(r.status, 0, None, changes=False)
        raise IdempotencyConflict(
            f"reservation {r.reservation_id} was already committed with {r.committed_quantity}",
            reservation_id=r.reservation_id,
        )
    if r.status is ReservationStatus.RELEASED or r.status is ReservationStatus.REFUSED:
        raise ReservationSettled(
            f"reservation {r.reservation_id} was {r.status.value} and holds nothing to "
            "commit; report the usage as a usage event instead",
            reservation_id=r.reservation_id,
            status=r.status.value,
        )
    return Settlement(ReservationStatus.COMMITTED, r.holding, actual)


def release_of(reservation: Reservation) -> Settlement:
    """Give the hold back without recording usage. Releasing what holds nothing (released,
    expired or refused) changes nothing; a committed reservation cannot be released."""
    r = reservation
    if r.status is ReservationStatus.COMMITTED:
        raise ReservationSettled(
            f"reservation {r.reservation_id} was committed: its usage is recorded",
            reservation_id=r.reservation_id,
            status=r.status.value,
        )
    if r.status is ReservationStatus.HELD:
        return Settlement(ReservationStatus.RELEASED, r.estimate, None)
    return Settlement(r.status, 0, None, changes=False)
