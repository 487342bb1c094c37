"""UsageTracker (threads) and AsyncUsageTracker (asyncio): `track()` returns at once, never
raises, and every event it accepted reaches the kernel exactly once."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from billing_kernel_sdk._delivery import Delivery, TrackerStats, wire
from billing_kernel_sdk._entitlements import EntitlementsCache
from billing_kernel_sdk._events import Event
from billing_kernel_sdk._integrations import TrackingHelpers
from billing_kernel_sdk._quota import Gate, OnUnavailable
from billing_kernel_sdk._quota_calls import AsyncQuotaCalls, QuotaCalls
from billing_kernel_sdk.transport import (
    AsyncHttpTransport,
    AsyncTransport,
    EventResult,
    HttpTransport,
    Transport,
)

logger = logging.getLogger("billing_kernel_sdk")

DEFAULTS: dict[str, Any] = {
    "max_batch": 500,
    "max_delay": 1.0,
    "max_queue": 100_000,
    "max_spool_bytes": 512 * 1024 * 1024,
    "backoff_base": 0.2,
    "backoff_cap": 30.0,
}


def _endpoint(base_url: str | None, api_key: str | None) -> tuple[str, str]:
    if not base_url or not api_key:
        raise ValueError("give base_url and api_key, or a transport")
    return base_url, api_key


def _delivery(
    spool_dir: str | Path | None,
    tuning: dict[str, Any],
    on_unavailable: OnUnavailable | None,
    decision_timeout: float,
) -> tuple[float, Delivery, Gate]:
    """The batching delay, the shared core built with the rest of the tuning, and the
    quota calls' gate."""
    options = {**DEFAULTS, **tuning}
    max_delay = float(options.pop("max_delay"))
    core = Delivery(spool_dir=spool_dir, **options)
    return max_delay, core, Gate(core, on_unavailable, decision_timeout)


class UsageTracker(QuotaCalls, TrackingHelpers):
    """Reports usage to a billing kernel from a background thread.

    ```python
    tracker = UsageTracker("https://billing.internal", api_key, spool_dir="/var/lib/app/usage")
    tracker.track("acme", "tokens", 1532)            # returns at once, never raises
    with tracker.run("acme", run_id="run-42"):       # one playbook run, counted once
        ...
    tracker.close()                                  # or let interpreter exit drain it
    ```

    It also asks the kernel for quota decisions, blocking until it answers: `check()`,
    `consume()`, `guard()`, `reserve()`, and `run()`, which admits a run through a consume.
    Each call tries for up to `decision_timeout` seconds (5); if the kernel cannot be
    reached, `on_unavailable` ("allow" or "deny", per tracker or per call) decides; left
    unset, a metric last seen soft (or not seen yet) is allowed and one last seen hard is
    denied. Usage allowed that way is queued and recorded once the kernel is back.
    `entitlements()`, `has_feature()` and `feature_value()` read an org's features and
    limits in one call and keep them for the time the kernel says (60 s).

    Events are batched (up to `max_batch`, or every `max_delay` seconds) and sent with
    retries (capped exponential backoff with jitter) until the kernel answers for them. With
    `spool_dir`, each event is written to disk before `track()` returns and removed only once
    the kernel has counted it, so a crash or kill loses nothing: the next tracker on the same
    directory sends what is left. Without it, up to `max_queue` events wait in memory.
    When the buffer (or the spool's `max_spool_bytes`) is full, new events are dropped and
    counted in `stats().dropped`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        spool_dir: str | Path | None = None,
        transport: Transport | None = None,
        timeout: float = 10.0,
        drain_on_exit: float = 5.0,
        on_unavailable: OnUnavailable | None = None,
        decision_timeout: float = 5.0,
        **tuning: Any,
    ) -> None:
        self._transport = transport or HttpTransport(*_endpoint(base_url, api_key), timeout=timeout)
        self._entitlements = EntitlementsCache()
        self._max_delay, self._core, self._gate = _delivery(
            spool_dir, tuning, on_unavailable, decision_timeout
        )
        self._cond = threading.Condition()
        self._core.recorder.wake = self._wake
        self._flushing = 0
        self._flush_calls = 0
        self._closing = False
        self._abandon = False
        self._drain_on_exit = drain_on_exit
        self._thread = threading.Thread(target=self._run, name="billing-usage-sender", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    def track(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Record `quantity` of `metric` for the org. Returns at once; never raises.

        Give `idempotency_key` when the same usage might be tracked twice (a retried job);
        otherwise each call gets a unique key. `occurred_at` (aware) defaults to now.
        `properties` (a JSON object, such as `{"model": "gpt-5"}`) are kept with the event.
        """
        self._core.recorder.track(
            org_id, metric, quantity, idempotency_key, occurred_at, properties
        )

    def track_event(
        self,
        org_id: str,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Record a named event (`"llm.completion"`) for the org: each metric that counts
        its name counts it, reading what it needs from `properties` (see the kernel's
        metrics). Returns at once; never raises; keys and times as for `track`."""
        self._core.recorder.track(
            org_id, event, 0, idempotency_key, occurred_at, properties, named=True
        )

    def stats(self) -> TrackerStats:
        return self._core.ledger.stats()

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything tracked so far; True if nothing is left pending.

        A sender waiting to retry tries at once. If the kernel refuses the API key meanwhile,
        flush() returns False then, without waiting out `timeout`: `stats().last_error` says
        what the kernel answered, and the events are kept for a key that works."""
        with self._cond:
            self._flushing += 1
            self._flush_calls += 1
            refusals = self._core.ledger.refusals
            self._cond.notify_all()
            try:
                self._cond.wait_for(
                    lambda: (
                        self._core.ledger.buffer.pending() == 0
                        or self._core.ledger.refusals > refusals
                    ),
                    timeout,
                )
                return self._core.ledger.buffer.pending() == 0
            finally:
                self._flushing -= 1

    def dead_letters(self) -> list[dict[str, object]]:
        """The events set aside because the kernel failed on each alone (see docs/sdk.md):
        each as it was sent, with `error` and `set_aside_at` (Unix time)."""
        return self._core.ledger.buffer.dead_letters()

    def close(self, timeout: float | None = None) -> bool:
        """Flush (up to `timeout`), stop the sender and release the spool. True if drained.

        Without a spool, events still unsent are lost (and counted as dropped); with one,
        they stay on disk for the next tracker.
        """
        drained = self.flush(timeout)
        with self._cond:
            self._closing = self._abandon = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        left = self._core.ledger.buffer.pending()
        if left and not self._core.ledger.spooled:
            self._core.ledger.count("dropped", left)
            logger.error("usage tracker closed with %d unsent event(s)", left)
        self._transport.close()
        self._core.ledger.buffer.close()
        atexit.unregister(self._at_exit)
        return drained

    def __enter__(self) -> UsageTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close(self._drain_on_exit)

    def _at_exit(self) -> None:
        self.close(self._drain_on_exit)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _urgent(self) -> bool:
        pending = self._core.ledger.buffer.pending()
        return pending > 0 and (
            self._flushing > 0 or self._closing or pending >= self._core.ledger.max_batch
        )

    def _retry_now(self, flushes_before: int) -> bool:
        """Stop waiting to retry: the tracker is closing, or flush() was called since."""
        return self._abandon or self._flush_calls != flushes_before

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._abandon:
                    return
                if not self._urgent():
                    self._cond.wait(self._max_delay)
            while self._core.ledger.buffer.pending() and not self._abandon:
                flushes = self._flush_calls
                delay = self._core.sender.deliver(self._transport.send)
                with self._cond:
                    self._cond.notify_all()  # progress, or a refusal flush() reports
                    if delay is not None:
                        self._cond.wait_for(partial(self._retry_now, flushes), delay)


class AsyncUsageTracker(AsyncQuotaCalls, TrackingHelpers):
    """The asyncio tracker: the same `track()` (a plain, non-blocking call) and guarantees,
    with the sender as a task on the running loop. Create it inside the loop (e.g. at app
    start-up) and `await tracker.aclose()` at shutdown. A kernel in the same process
    has its own transport: `billing_kernel.embedded.in_process_tracker(kernel)`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        spool_dir: str | Path | None = None,
        transport: AsyncTransport | None = None,
        timeout: float = 10.0,
        drain_on_exit: float = 5.0,
        on_unavailable: OnUnavailable | None = None,
        decision_timeout: float = 5.0,
        **tuning: Any,
    ) -> None:
        self._transport = transport or AsyncHttpTransport(
            *_endpoint(base_url, api_key), timeout=timeout
        )
        self._entitlements = EntitlementsCache()
        self._max_delay, self._core, self._gate = _delivery(
            spool_dir, tuning, on_unavailable, decision_timeout
        )
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._flush_requested = asyncio.Event()
        self._progress = asyncio.Condition()
        self._core.recorder.wake = self._wake
        self._flushing = 0
        self._closing = False
        self._task = self._loop.create_task(self._run(), name="billing-usage-sender")
        self._drain_on_exit = drain_on_exit
        self._exit_transport: Callable[[], Transport] | None = (
            (lambda: HttpTransport(base_url, api_key, timeout=timeout))
            if isinstance(self._transport, AsyncHttpTransport) and base_url and api_key
            else None
        )
        atexit.register(self._at_exit)

    def track(
        self,
        org_id: str,
        metric: str,
        quantity: int,
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Record usage; returns at once and never raises (see UsageTracker.track)."""
        self._core.recorder.track(
            org_id, metric, quantity, idempotency_key, occurred_at, properties
        )

    def track_event(
        self,
        org_id: str,
        event: str,
        properties: Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        occurred_at: datetime | None = None,
    ) -> None:
        """Record a named event; returns at once and never raises (see
        UsageTracker.track_event)."""
        self._core.recorder.track(
            org_id, event, 0, idempotency_key, occurred_at, properties, named=True
        )

    def stats(self) -> TrackerStats:
        return self._core.ledger.stats()

    async def flush(self, timeout: float | None = None) -> bool:
        """Send everything tracked so far; True if nothing is left pending. Returns False
        as soon as the kernel refuses the API key (see UsageTracker.flush)."""
        self._flushing += 1
        self._wakeup.set()
        self._flush_requested.set()
        refusals = self._core.ledger.refusals
        try:
            async with self._progress:
                await asyncio.wait_for(
                    self._progress.wait_for(
                        lambda: (
                            self._core.ledger.buffer.pending() == 0
                            or self._core.ledger.refusals > refusals
                        )
                    ),
                    timeout,
                )
        except TimeoutError:
            pass
        finally:
            self._flushing -= 1
        return self._core.ledger.buffer.pending() == 0

    def dead_letters(self) -> list[dict[str, object]]:
        """The events set aside (see UsageTracker.dead_letters)."""
        return self._core.ledger.buffer.dead_letters()

    async def aclose(self, timeout: float | None = None) -> bool:
        """Flush (up to `timeout`), stop the sender and release the spool. True if drained."""
        drained = await self.flush(timeout)
        self._closing = True
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        left = self._core.ledger.buffer.pending()
        if left and not self._core.ledger.spooled:
            self._core.ledger.count("dropped", left)
            logger.error("usage tracker closed with %d unsent event(s)", left)
        await self._transport.aclose()
        self._core.ledger.buffer.close()
        atexit.unregister(self._at_exit)
        return drained

    def _at_exit(self) -> None:
        """The loop is gone by now: deliver what is left from this thread, over HTTP."""
        if self._core.ledger.buffer.pending() and self._exit_transport is not None:
            transport = self._exit_transport()
            try:
                self._core.sender.drain(transport.send, self._drain_on_exit)
            finally:
                transport.close()
        left = self._core.ledger.buffer.pending()
        if left and not self._core.ledger.spooled:
            logger.error("usage tracker exited with %d unsent event(s)", left)
        self._core.ledger.buffer.close()

    async def __aenter__(self) -> AsyncUsageTracker:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose(5.0)

    def _wake(self) -> None:
        if threading.get_ident() == self._loop_thread:
            self._wakeup.set()
        else:
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def _run(self) -> None:
        # Not `while True`: on Python 3.11 a cancel that meets a wake-up inside `wait_for`
        # can be lost (aclose() wakes the sender, then cancels it); closing ends the loop.
        while not self._closing:
            pending = self._core.ledger.buffer.pending()
            if not (pending and (self._flushing or pending >= self._core.ledger.max_batch)):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._max_delay)
            self._wakeup.clear()
            while self._core.ledger.buffer.pending() and not self._closing:
                self._flush_requested.clear()  # a flush() from now on cuts the wait short
                batch, results, error = await self._attempt()
                delay = None
                if error is None:
                    self._core.sender.settle(batch, results)
                else:
                    delay = self._core.sender.failed(batch, error)
                async with self._progress:  # progress, or a refusal flush() reports
                    self._progress.notify_all()
                if delay is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._flush_requested.wait(), delay)

    async def _attempt(self) -> tuple[list[Event], list[EventResult], Exception | None]:
        batch: list[Event] = []
        try:
            if self._core.ledger.spooled:  # file reads and fsync: off the loop
                batch = await asyncio.to_thread(self._core.sender.next_batch)
                await asyncio.to_thread(self._core.ledger.buffer.sync)
            else:
                batch = self._core.sender.next_batch()
            events = wire(batch)
            return batch, (await self._transport.send(events) if events else []), None
        except Exception as exc:
            return batch, [], exc
