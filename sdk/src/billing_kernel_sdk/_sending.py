"""The sending half of a tracker: what to send next, what to do with the kernel's answer
(count it, forget what was answered), how long to wait after a failure, and finding the
events a kernel keeps failing on (`_Isolation`) so that they stop holding up the rest."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from billing_kernel_sdk._errors import TransportError
from billing_kernel_sdk._events import Event
from billing_kernel_sdk._ledger import Ledger
from billing_kernel_sdk.transport import EventResult

logger = logging.getLogger("billing_kernel_sdk")

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


class Sender:
    def __init__(
        self,
        ledger: Ledger,
        *,
        backoff_base: float,
        backoff_cap: float,
        isolate_after: int = ISOLATE_AFTER,
    ) -> None:
        self._ledger = ledger
        self._backoff = (backoff_base, backoff_cap)
        self._jitter = random.Random()
        self._isolate_after = isolate_after
        self._isolation: _Isolation | None = None
        self._attempt = 0
        """Deliveries failed in a row (the backoff's exponent); 0 after a success."""
        self._failures_here = 0
        """500 answers in a row to what is being sent now (the batch, or one part of it)."""
        self._auth_logged_at: float | None = None

    def next_batch(self) -> list[Event]:
        """What to send now: the oldest events, or the part of them being isolated."""
        if self._isolation is not None:
            return self._isolation.current()
        return self._ledger.buffer.peek(self._ledger.max_batch)

    def settle(self, batch: list[Event], results: list[EventResult]) -> None:
        """The kernel answered for every event of `batch`: count, and forget them."""
        tally = {"accepted": 0, "duplicate": 0, "conflict": 0, "refused": 0}
        for result in results:
            if result.error_code == "idempotency_conflict":
                tally["conflict"] += 1
            else:
                tally[result.status if result.status in tally else "refused"] += 1
            if result.status not in ("accepted", "duplicate"):
                self._ledger.log_once(
                    f"refused:{result.error_code}",
                    logging.WARNING,
                    "the kernel refused usage: %s",
                    result.error_code,
                )
        skipped = len(batch) - len(results)  # corrupt spool lines, never sent
        with self._ledger.lock:
            self._ledger.counts["accepted"] += tally["accepted"]
            self._ledger.counts["duplicates"] += tally["duplicate"]
            self._ledger.counts["conflicts"] += tally["conflict"]
            self._ledger.counts["refused"] += tally["refused"]
            self._ledger.counts["dropped"] += skipped
            self._ledger.last_error = None
        self._attempt = self._failures_here = 0
        self._auth_logged_at = None
        self._done_with(batch)

    def deliver(self, send: Callable[[list[dict[str, object]]], list[EventResult]]) -> float | None:
        """Send what is due once. None when it was settled; else how long to wait before
        the next attempt."""
        batch = self.next_batch()
        try:
            self._ledger.buffer.sync()
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
        with self._ledger.lock:
            self._ledger.last_error = str(error) or type(error).__name__
        status = error.status if isinstance(error, TransportError) else None
        final = isinstance(error, TransportError) and not error.retryable
        if final and len(batch) == 1:
            self.give_up(batch, error)
            return None
        self._ledger.count("retried")
        self._attempt += 1
        if status in (401, 403):
            self._refused_credentials(error)
        else:
            self._ledger.log_once(
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
            self._ledger.buffer.ack(len(batch))
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
            self._ledger.log_once(
                "isolation:unanswered",
                logging.ERROR,
                "the kernel fails on every usage event sent alone; keeping them all and "
                "retrying: %s",
                self._ledger.last_error,
            )
            return
        for position, answer in isolation.suspects:
            self._set_aside(isolation.batch[position], answer)
        self._ledger.buffer.ack(len(isolation.batch))

    def _set_aside(self, event: Event, answer: str) -> None:
        self._ledger.buffer.set_aside([event], answer)
        self._ledger.count("dead_lettered")
        logger.error(
            "usage event set aside: the kernel failed on it alone %d times while it took "
            "others; org %r, idempotency key %r, kept in %s. Its answer: %s",
            self._isolate_after,
            event.org_id,
            event.idempotency_key,
            "the spool's dead-letter file" if self._ledger.spooled else "dead_letters()",
            answer,
        )

    def _refused_credentials(self, error: Exception) -> None:
        self._ledger.count("unauthorized")
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
        while self._ledger.buffer.pending() and time.monotonic() < deadline:
            delay = self.deliver(send)
            if delay is not None:
                time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        return self._ledger.buffer.pending() == 0

    def give_up(self, batch: list[Event], reason: Exception) -> None:
        """The kernel will never take this event as it is: count it as refused."""
        logger.error("giving up on %d usage event(s): %s", len(batch), reason)
        self._ledger.count("refused", len(batch))
        self._failures_here = 0
        self._done_with(batch)

    def retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Capped exponential backoff with jitter; a server's Retry-After is honoured."""
        base, cap = self._backoff
        delay = min(cap, base * 2**attempt) * self._jitter.uniform(0.5, 1.0)
        return float(min(cap, max(delay, retry_after or 0.0)))


def wire(batch: list[Event]) -> list[dict[str, object]]:
    """The events of `batch` to send (a corrupt spool line stands as an event with no key)."""
    return [event.wire() for event in batch if event.idempotency_key]
