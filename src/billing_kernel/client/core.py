"""What the sync and async trackers share: validation, buffering, statistics, and what to do
with a batch's answer. The trackers add only a sender loop around it."""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from billing_kernel.client.buffer import Buffer, MemoryBuffer, Spool
from billing_kernel.client.errors import TransportError
from billing_kernel.client.events import Event, to_micros
from billing_kernel.client.transport import EventResult
from billing_kernel.domain.usage import MAX_EVENT_QUANTITY, MAX_IDEMPOTENCY_KEY_LENGTH, validate_id

logger = logging.getLogger("billing_kernel.client")


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """What a tracker has done since it was created."""

    accepted: int
    """`track()` calls taken into the buffer."""
    sent: int
    """Events the kernel counted."""
    duplicates: int
    """Events the kernel already had (a resend after a lost answer): counted once."""
    retried: int
    """Batch deliveries that failed and were tried again."""
    spooled: int
    """Events written to the spool."""
    dropped: int
    """Events not kept: the buffer or the spool's disk budget was full (or, without a spool,
    still unsent when the tracker closed)."""
    conflicts: int
    """Events whose key the kernel already had with another payload (often another time:
    a retried run tracked later). The first was counted; these were not."""
    refused: int
    """Events with invalid arguments, or refused by the kernel."""
    pending: int
    """Events waiting to be sent now."""


STAT_NAMES = (
    "accepted",
    "sent",
    "duplicates",
    "retried",
    "spooled",
    "dropped",
    "conflicts",
    "refused",
)


class Core:
    def __init__(
        self,
        *,
        spool_dir: str | Path | None,
        max_batch: int,
        max_queue: int,
        max_spool_bytes: int,
        backoff_base: float,
        backoff_cap: float,
    ) -> None:
        self.buffer: Buffer = (
            Spool(spool_dir, max_bytes=max_spool_bytes)
            if spool_dir is not None
            else MemoryBuffer(max_queue)
        )
        self.spooled = spool_dir is not None
        self.max_batch = max_batch
        self._backoff = (backoff_base, backoff_cap)
        self._jitter = random.Random()
        self._key_prefix = secrets.token_hex(8)
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(STAT_NAMES, 0)
        self._logged: set[str] = set()
        self.wake = _nothing
        """Called (from any thread) when a full batch is waiting."""

    def track(
        self,
        org_id: object,
        metric: object,
        quantity: object,
        idempotency_key: object,
        occurred_at: object,
    ) -> None:
        try:
            event = self._event(org_id, metric, quantity, idempotency_key, occurred_at)
        except Exception as exc:  # invalid arguments: counted and logged, never raised
            self.count("refused")
            self.log_once(f"invalid:{_kind(exc)}", logging.WARNING, "usage not tracked: %s", exc)
            return
        try:
            with self._lock:
                kept = self.buffer.append(event)
                if kept:
                    self._counts["accepted"] += 1
                    self._counts["spooled"] += self.spooled
                else:
                    self._counts["dropped"] += 1
        except Exception as exc:  # e.g. the spool's disk failed
            self.count("dropped")
            self.log_once(
                f"buffer:{type(exc).__name__}",
                logging.ERROR,
                "usage dropped: the buffer failed: %r",
                exc,
            )
            return
        if not kept:
            self.log_once(
                "full",
                logging.ERROR,
                "usage dropped: the tracker's buffer is full (see stats().dropped)",
            )
        elif self.buffer.pending() >= self.max_batch:
            self.wake()

    def _event(
        self, org_id: object, metric: object, quantity: object, key: object, occurred: object
    ) -> Event:
        if not isinstance(metric, str) or not 0 < len(metric) <= 64:
            raise _Invalid("metric", f"metric must be a non-empty string, not {metric!r:.80}")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise _Invalid("quantity", f"quantity must be a whole number, not {quantity!r:.80}")
        if not 0 <= quantity <= MAX_EVENT_QUANTITY:
            raise _Invalid("quantity", f"quantity {quantity} is out of range")
        if key is None:
            key = f"{self._key_prefix}-{next(self._sequence)}"
        else:
            key = validate_id(key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
        if occurred is None:
            micros = time.time_ns() // 1000
        elif isinstance(occurred, datetime):
            micros = to_micros(occurred)
        else:
            raise _Invalid("occurred_at", f"occurred_at must be a datetime, not {occurred!r:.80}")
        return Event(validate_id(org_id, "org_id"), metric, quantity, key, micros)

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def stats(self) -> TrackerStats:
        with self._lock:
            return TrackerStats(**self._counts, pending=self.buffer.pending())

    def log_once(self, kind: str, level: int, message: str, *args: object) -> None:
        """Log the first occurrence of each kind of problem only (tracking is hot)."""
        if kind not in self._logged and len(self._logged) < 1000:
            self._logged.add(kind)
            logger.log(level, message, *args)

    # --- the sender's side ---------------------------------------------------------------

    def next_batch(self) -> list[Event]:
        return self.buffer.peek(self.max_batch)

    def settle(self, batch: list[Event], results: list[EventResult]) -> None:
        """The kernel answered for every event of `batch`: count, and forget them."""
        tally = {"accepted": 0, "duplicate": 0, "conflict": 0, "refused": 0}
        for result in results:
            if result.error_code == "idempotency_conflict":
                tally["conflict"] += 1
            else:
                tally[result.status if result.status in tally else "refused"] += 1
            if result.status not in ("accepted", "duplicate"):
                self.log_once(
                    f"refused:{result.error_code}",
                    logging.WARNING,
                    "the kernel refused usage: %s",
                    result.error_code,
                )
        skipped = len(batch) - len(results)  # corrupt spool lines, never sent
        with self._lock:
            self._counts["sent"] += tally["accepted"]
            self._counts["duplicates"] += tally["duplicate"]
            self._counts["conflicts"] += tally["conflict"]
            self._counts["refused"] += tally["refused"]
            self._counts["dropped"] += skipped
        self.buffer.ack(len(batch))

    def deliver(
        self, send: Callable[[list[dict[str, object]]], list[EventResult]], attempt: int
    ) -> float | None:
        """Send the oldest batch once. None when it was settled; else how long to wait
        before the next attempt."""
        batch = self.next_batch()
        try:
            self.buffer.sync()
            events = wire(batch)
            results = send(events) if events else []
        except Exception as exc:
            return self.failed(batch, exc, attempt)
        self.settle(batch, results)
        return None

    def failed(self, batch: list[Event], error: Exception, attempt: int) -> float | None:
        """A delivery failed: give the batch up if the kernel will never take it (None), or
        count a retry and say how long to wait."""
        if isinstance(error, TransportError) and not error.retryable and batch:
            self.give_up(batch, error)
            return None
        self.count("retried")
        self.log_once(
            f"send:{type(error).__name__}",
            logging.WARNING,
            "usage delivery failed, will retry: %s",
            error,
        )
        return self.retry_delay(attempt, getattr(error, "retry_after", None))

    def drain(
        self, send: Callable[[list[dict[str, object]]], list[EventResult]], seconds: float
    ) -> bool:
        """Deliver in the calling thread for up to `seconds` (at interpreter exit)."""
        deadline = time.monotonic() + seconds
        attempt = 0
        while self.buffer.pending() and time.monotonic() < deadline:
            delay = self.deliver(send, attempt)
            attempt = 0 if delay is None else attempt + 1
            if delay is not None:
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        return self.buffer.pending() == 0

    def give_up(self, batch: list[Event], reason: Exception) -> None:
        """The kernel will never take this batch as it is: count its events as refused."""
        logger.error("giving up on %d usage event(s): %s", len(batch), reason)
        self.count("refused", len(batch))
        self.buffer.ack(len(batch))

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff with jitter; a server's Retry-After is honoured."""
        base, cap = self._backoff
        delay = min(cap, base * 2**attempt) * self._jitter.uniform(0.5, 1.0)
        return float(min(cap, max(delay, retry_after or 0.0)))


class _Invalid(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _kind(error: Exception) -> str:
    """Which argument was wrong: logging is once per kind, not once per bad value."""
    details = getattr(error, "details", None)
    field = getattr(error, "field", None) or (details or {}).get("field")
    return str(field or type(error).__name__)


def wire(batch: list[Event]) -> list[dict[str, object]]:
    """The events of `batch` to send (a corrupt spool line stands as an event with no key)."""
    return [event.wire() for event in batch if event.idempotency_key]


def _nothing() -> None:
    pass
