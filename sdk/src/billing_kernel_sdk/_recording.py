"""The recording half of a tracker: `track()` checks an event by the kernel's own field rules
(`fields`), gives it its key and time, and queues it; it never raises and never waits on
the kernel."""

from __future__ import annotations

import itertools
import logging
import secrets
import time

from billing_kernel_sdk._events import Event, to_micros
from billing_kernel_sdk._ledger import Ledger
from billing_kernel_sdk.fields import (
    MAX_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    canonical_properties,
    check_event_name,
    check_id,
    check_occurred_at,
    check_quantity,
)


class Recorder:
    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._key_prefix = secrets.token_hex(8)
        self._sequence = itertools.count()
        self._checked_names: set[tuple[str, str]] = set()
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
            self._ledger.count("refused")
            self._ledger.log_once(
                f"invalid:{_kind(exc)}", logging.WARNING, "usage not tracked: %s", exc
            )
            return
        try:
            ledger = self._ledger
            with ledger.lock:
                kept = ledger.buffer.append(event)
                if kept:
                    ledger.counts["queued"] += 1
                    ledger.counts["spooled"] += ledger.spooled
                else:
                    ledger.counts["dropped"] += 1
        except Exception as exc:  # e.g. the spool's disk failed
            self._ledger.count("dropped")
            self._ledger.log_once(
                f"buffer:{type(exc).__name__}",
                logging.ERROR,
                "usage dropped: the buffer failed: %r",
                exc,
            )
            return
        if not kept:
            self._ledger.log_once(
                "full",
                logging.ERROR,
                "usage dropped: the tracker's buffer is full (see stats().dropped)",
            )
        elif self._ledger.buffer.pending() >= self._ledger.max_batch:
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
        observed = False
        if key is None:
            key = f"{self._key_prefix}-{next(self._sequence)}"
        else:
            key = check_id(key, "idempotency_key", MAX_IDEMPOTENCY_KEY_LENGTH)
            # A key names one logical event: tracked again (a retry, a rerun, another
            # process) it must be the same payload, so a time only observed is not part of it.
            observed = occurred is None
        what = "event" if named else "metric"
        if isinstance(metric, str) and (what, metric) in self._checked_names:
            name = metric  # a handful of names: each is checked once
        else:
            name = check_event_name(metric) if named else check_id(metric, what, MAX_ID_LENGTH)
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
            observed,
        )


def _kind(error: Exception) -> str:
    """Which argument was wrong: logging is once per kind, not once per bad value."""
    return str(getattr(error, "field", None) or type(error).__name__)


def _nothing() -> None:
    pass
