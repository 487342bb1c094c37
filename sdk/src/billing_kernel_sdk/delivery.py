"""What the sync and async trackers share: validation, buffering, statistics, and what to do
with a batch's answer. The trackers add only a sender loop around it."""

from __future__ import annotations

import itertools
import logging
import random
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from billing_kernel_sdk.buffer import Buffer, MemoryBuffer, Spool
from billing_kernel_sdk.errors import TransportError
from billing_kernel_sdk.events import Event, to_micros
from billing_kernel_sdk.fields import (
    MAX_EVENT_NAME_LENGTH,
    MAX_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    canonical_properties,
    check_id,
    check_occurred_at,
    check_quantity,
)
from billing_kernel_sdk.transport import EventResult

logger = logging.getLogger("billing_kernel_sdk")


@dataclass(frozen=True, slots=True)
class TrackerStats:
    """What a tracker has done since it was created."""

    queued: int
    """`track()` calls taken into the buffer, to be sent."""
    accepted: int
    """Events the kernel accepted and counted."""
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
    """Events with invalid arguments, or refused by the kernel; never counted."""
    skipped: int
    """LLM responses that reported no usage (nothing to count; logged at debug)."""
    dead_lettered: int
    """Events set aside because the kernel failed on each of them alone while it took the
    others (see `dead_letters()`); they no longer hold up the queue."""
    unavailable: int
    """Quota decisions the tracker made itself, the kernel being out of reach
    (`on_unavailable`); what they allowed to be consumed is queued like tracked usage."""
    unauthorized: int
    """Deliveries the kernel refused for the API key (401/403). The events wait for a
    key that works; `last_error` says what the kernel answered."""
    pending: int
    """Events waiting to be sent now."""
    last_error: str | None
    """Why the last delivery failed; None once one succeeds."""


STAT_NAMES = (
    "queued",
    "accepted",
    "duplicates",
    "retried",
    "spooled",
    "dropped",
    "conflicts",
    "refused",
    "skipped",
    "dead_lettered",
    "unavailable",
    "unauthorized",
)

REMEMBERED_KEYS = 10_000
"""Idempotency keys whose first event time a tracker keeps (the most recently first seen)."""

ISOLATE_AFTER = 3
"""Answers of 500 to the same batch before it is split to find the events the kernel fails
on. Only a 500 (the kernel answered, and failed on this request) counts: 503, 502, 504,
429 and network errors say the kernel is momentarily unavailable, and are retried as
they are."""
AUTH_LOG_SECONDS = 60.0
"""A refused API key is logged at the first refusal, then at most this often."""


@dataclass
class _Isolation:
    """The oldest batch, which the kernel keeps failing on, being delivered in parts
    (halves, then halves of halves) to find the events it fails on alone.

    An event is set aside only if the kernel failed on it alone after it had answered
    another part: before that, the kernel may have been failing on everything."""

    batch: list[Event]
    parts: list[tuple[int, int]]
    """`[start, end)` ranges of `batch` still to deliver, oldest first."""
    suspects: list[tuple[int, str]] = field(default_factory=list)
    """Positions in `batch` of events the kernel failed on alone, with its answer."""
    answered: bool = False
    """The kernel answered some part: it works, so a suspect from now on is the event."""

    def current(self) -> list[Event]:
        start, end = self.parts[0]
        return self.batch[start:end]

    def split_current(self, answer: str) -> None:
        """Deliver the current part as two halves; a single event becomes a suspect."""
        start, end = self.parts.pop(0)
        if end - start == 1:
            self.suspects.append((start, answer))
        else:
            middle = (start + end) // 2
            self.parts[0:0] = [(start, middle), (middle, end)]

    def current_answered(self) -> None:
        """The kernel answered the current part. Suspects from before its first answer
        are sent alone again: they may have failed with the kernel, not by themselves."""
        self.parts.pop(0)
        if not self.answered:
            self.answered = True
            self.parts.extend((position, position + 1) for position, _ in self.suspects)
            self.suspects.clear()


class Delivery:
    def __init__(
        self,
        *,
        spool_dir: str | Path | None,
        max_batch: int,
        max_queue: int,
        max_spool_bytes: int,
        backoff_base: float,
        backoff_cap: float,
        isolate_after: int = ISOLATE_AFTER,
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
        self._checked_names: set[tuple[str, str]] = set()
        self._first_seen: OrderedDict[str, int] = OrderedDict()
        """Event time of recent keys tracked without one: a repeat gets the same time."""
        self._isolate_after = isolate_after
        self._isolation: _Isolation | None = None
        self._attempt = 0
        """Deliveries failed in a row (the backoff's exponent); 0 after a success."""
        self._failures_here = 0
        """500 answers in a row to what is being sent now (the batch, or one part of it)."""
        self._last_error: str | None = None
        self._auth_logged_at: float | None = None
        self.wake = _nothing
        """Called (from any thread) when a full batch is waiting."""

    def track(
        self,
        org_id: object,
        metric: object,
        quantity: object,
        idempotency_key: object,
        occurred_at: object,
        properties: object = None,
        named: bool = False,
    ) -> None:
        try:
            event = self._event(
                org_id, metric, quantity, idempotency_key, occurred_at, properties, named
            )
        except Exception as exc:  # invalid arguments: counted and logged, never raised
            self.count("refused")
            self.log_once(f"invalid:{_kind(exc)}", logging.WARNING, "usage not tracked: %s", exc)
            return
        try:
            with self._lock:
                kept = self.buffer.append(event)
                if kept:
                    self._counts["queued"] += 1
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
        self,
        org_id: object,
        metric: object,
        quantity: object,
        key: object,
        occurred: object,
        properties: object = None,
        named: bool = False,
    ) -> Event:
        """The event, checked by the rules the kernel applies to each field (`fields`);
        whether the metric (or a metric counting the event's name) exists, and the event
        time's window, are the kernel's to judge."""
        if occurred is not None:
            micros = to_micros(check_occurred_at(occurred))
        else:
            micros = time.time_ns() // 1000
        if key is None:
            key = f"{self._key_prefix}-{next(self._sequence)}"
        else:
            key = check_id(key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
            if occurred is None:
                micros = self._time_of(key, micros)
        what = "event" if named else "metric"
        if isinstance(metric, str) and (what, metric) in self._checked_names:
            name = metric  # a handful of names: each is checked once
        else:
            name = check_id(metric, what, MAX_EVENT_NAME_LENGTH if named else MAX_ID_LENGTH)
            if len(self._checked_names) < 1000:
                self._checked_names.add((what, name))
        amount = 0 if named else check_quantity(quantity)
        canonical_properties(properties)  # the kernel's rule; the dict itself is sent
        return Event(
            check_id(org_id, "org_id"),
            name,
            amount,
            key,
            micros,
            None if properties is None else dict(properties),  # type: ignore[call-overload]
            named,
        )

    def _time_of(self, key: str, now: int) -> int:
        """The event time of `key`: when it was first tracked, if that is remembered.

        One key names one logical event (an LLM response, a run), so tracking it again (a
        retry in the product, a re-entered run) sends the same payload, and the kernel
        answers `duplicate`, not `idempotency_conflict`."""
        with self._lock:
            first = self._first_seen.setdefault(key, now)
            if len(self._first_seen) > REMEMBERED_KEYS:  # forget the key first seen longest ago
                self._first_seen.popitem(last=False)
        return first

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def stats(self) -> TrackerStats:
        with self._lock:
            return TrackerStats(
                **self._counts, pending=self.buffer.pending(), last_error=self._last_error
            )

    def log_once(self, kind: str, level: int, message: str, *args: object) -> None:
        """Log the first occurrence of each kind of problem only (tracking is hot)."""
        if kind not in self._logged and len(self._logged) < 1000:
            self._logged.add(kind)
            logger.log(level, message, *args)

    # --- the sender's side ---------------------------------------------------------------

    def next_batch(self) -> list[Event]:
        """What to send now: the oldest events, or the part of them being isolated."""
        if self._isolation is not None:
            return self._isolation.current()
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
            self._counts["accepted"] += tally["accepted"]
            self._counts["duplicates"] += tally["duplicate"]
            self._counts["conflicts"] += tally["conflict"]
            self._counts["refused"] += tally["refused"]
            self._counts["dropped"] += skipped
            self._last_error = None
        self._attempt = self._failures_here = 0
        self._auth_logged_at = None
        self._done_with(batch)

    def deliver(self, send: Callable[[list[dict[str, object]]], list[EventResult]]) -> float | None:
        """Send what is due once. None when it was settled; else how long to wait before
        the next attempt."""
        batch = self.next_batch()
        try:
            self.buffer.sync()
            events = wire(batch)
            results = send(events) if events else []
        except Exception as exc:
            return self.failed(batch, exc)
        self.settle(batch, results)
        return None

    def failed(self, batch: list[Event], error: Exception) -> float | None:
        """A delivery failed. None when `batch` was settled all the same (the kernel will
        never take its one event); else how long to wait before the next attempt, which
        may send a smaller part of it (see `_Isolation`)."""
        with self._lock:
            self._last_error = str(error) or type(error).__name__
        status = error.status if isinstance(error, TransportError) else None
        final = isinstance(error, TransportError) and not error.retryable
        if final and len(batch) == 1:
            self.give_up(batch, error)
            return None
        self.count("retried")
        self._attempt += 1
        if status in (401, 403):
            self._refused_credentials(error)
        else:
            self.log_once(
                f"send:{type(error).__name__}:{status}",
                logging.WARNING,
                "usage delivery failed, will retry: %s",
                error,
            )
        retry_after = getattr(error, "retry_after", None)
        if final or status == 500:
            self._failures_here += 1
            if final or self._failures_here >= self._isolate_after:
                self._isolate_part(batch, str(error))
                if self._isolation is not None:
                    return 0.0  # the next part, at once
            elif self._isolation is not None:  # quick retries while narrowing down
                return self.retry_delay(self._failures_here - 1, retry_after)
        return self.retry_delay(self._attempt - 1, retry_after)

    def _isolate_part(self, batch: list[Event], answer: str) -> None:
        """Deliver `batch` (what was just sent) in halves from now on."""
        self._failures_here = 0
        if self._isolation is None:
            self._isolation = _Isolation(batch, [(0, len(batch))])
            logger.warning(
                "the kernel keeps failing on a batch of %d usage event(s); delivering it in "
                "parts to find the events it fails on",
                len(batch),
            )
        self._isolation.split_current(answer)
        self._finish_isolation()

    def _done_with(self, batch: list[Event]) -> None:
        """The kernel answered for `batch` (all that was sent, or the current part)."""
        isolation = self._isolation
        if isolation is None:
            self.buffer.ack(len(batch))
            return
        isolation.current_answered()
        self._finish_isolation()

    def _finish_isolation(self) -> None:
        """Once every part was delivered or suspected: set the suspects aside and forget
        the batch, unless the kernel answered no part at all. Then it fails on every
        request, not on these events: they are kept, and the whole batch is retried."""
        isolation = self._isolation
        if isolation is None or isolation.parts:
            return
        self._isolation = None
        if isolation.suspects and not isolation.answered:
            self.log_once(
                "isolation:unanswered",
                logging.ERROR,
                "the kernel fails on every usage event sent alone; keeping them all and "
                "retrying: %s",
                self._last_error,
            )
            return
        for position, answer in isolation.suspects:
            self._set_aside(isolation.batch[position], answer)
        self.buffer.ack(len(isolation.batch))

    def _set_aside(self, event: Event, answer: str) -> None:
        self.buffer.set_aside([event], answer)
        self.count("dead_lettered")
        logger.error(
            "usage event set aside: the kernel failed on it alone %d times while it took "
            "others; org %r, idempotency key %r, kept in %s. Its answer: %s",
            self._isolate_after,
            event.org_id,
            event.idempotency_key,
            "the spool's dead-letter file" if self.spooled else "dead_letters()",
            answer,
        )

    @property
    def refusals(self) -> int:
        """Deliveries refused for the API key so far (stats().unauthorized)."""
        return self._counts["unauthorized"]

    def _refused_credentials(self, error: Exception) -> None:
        self.count("unauthorized")
        now = time.monotonic()
        if self._auth_logged_at is None or now - self._auth_logged_at >= AUTH_LOG_SECONDS:
            self._auth_logged_at = now
            logger.error(
                "the kernel refused the tracker's API key; usage is kept and sent once a "
                "key works (a service key with usage:write): %s",
                error,
            )

    def drain(
        self, send: Callable[[list[dict[str, object]]], list[EventResult]], seconds: float
    ) -> bool:
        """Deliver in the calling thread for up to `seconds` (at interpreter exit)."""
        deadline = time.monotonic() + seconds
        while self.buffer.pending() and time.monotonic() < deadline:
            delay = self.deliver(send)
            if delay is not None:
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        return self.buffer.pending() == 0

    def give_up(self, batch: list[Event], reason: Exception) -> None:
        """The kernel will never take this event as it is: count it as refused."""
        logger.error("giving up on %d usage event(s): %s", len(batch), reason)
        self.count("refused", len(batch))
        self._failures_here = 0
        self._done_with(batch)

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff with jitter; a server's Retry-After is honoured."""
        base, cap = self._backoff
        delay = min(cap, base * 2**attempt) * self._jitter.uniform(0.5, 1.0)
        return float(min(cap, max(delay, retry_after or 0.0)))


def _kind(error: Exception) -> str:
    """Which argument was wrong: logging is once per kind, not once per bad value."""
    return str(getattr(error, "field", None) or type(error).__name__)


def wire(batch: list[Event]) -> list[dict[str, object]]:
    """The events of `batch` to send (a corrupt spool line stands as an event with no key)."""
    return [event.wire() for event in batch if event.idempotency_key]


def _nothing() -> None:
    pass
