"""The quota calls both trackers make (`check`, `consume`, `guard`, `reserve`, `run`): they
ask the kernel and wait for its decision, where `track()` only reports. What is asked and
what to do without an answer is `quota.py`'s; the calls, and their waits, are here, once
blocking and once awaited."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from billing_kernel_sdk._entitlements import (
    Entitlements,
    EntitlementsCache,
    entitlements_call,
    read_entitlements,
)
from billing_kernel_sdk._errors import TransportError
from billing_kernel_sdk._integrations import PLAYBOOK_RUNS
from billing_kernel_sdk._quota import (
    AsyncReservation,
    Decision,
    Gate,
    OnUnavailable,
    QuotaExceeded,
    Reservation,
    check_call,
    new_key,
    reservation_call,
    run_key,
    unreachable,
)
from billing_kernel_sdk.transport import AsyncTransport, Request, Transport


def _last_or_raise(
    kept: EntitlementsCache, call: Request, error: TransportError, now: float
) -> Entitlements:
    """The org's last entitlements while the kernel is out of reach (`error` retryable),
    kept again for their `cache_seconds` so that the calls meanwhile do not each wait for
    the kernel; else `error`."""
    last = kept.last(str(call.org_id))
    if last is None or not error.retryable:
        raise error
    kept.keep(last, now)
    return last


def _no_requests(transport: object) -> TypeError:
    return TypeError(
        f"the tracker's transport ({type(transport).__name__}) makes no quota calls: give "
        "the tracker base_url and api_key, or a transport with request()"
    )


class QuotaCalls:
    """`UsageTracker`'s quota calls: blocking, from any thread."""

    _gate: Gate
    _transport: Transport
    _entitlements: EntitlementsCache

    def check(
        self,
        org_id: str,
        metric: str,
        amount: int = 1,
        *,
        on_unavailable: OnUnavailable | None = None,
    ) -> Decision:
        """Whether the org may use `amount` more of `metric` now (nothing is recorded). A
        refusal is a decision with `allowed` False and its `message`, not an exception."""
        call = check_call(org_id, metric, amount, None)
        return self._decide(call, on_unavailable, None)

    def consume(
        self,
        org_id: str,
        metric: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> Decision:
        """Decide and, if allowed, record `amount` as usage in one atomic step at the
        kernel: of concurrent consumes, only as many as fit are allowed. Retried under its
        key (given, or a new one) until the kernel answers, so it counts once."""
        key = new_key("consume", idempotency_key)
        return self._decide(check_call(org_id, metric, amount, key), on_unavailable, key)

    @contextlib.contextmanager
    def guard(
        self,
        org_id: str,
        metric: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> Iterator[Decision]:
        """Consume `amount` before the block runs; raise QuotaExceeded (with the decision
        and its message) instead of running it when refused. What was consumed stays
        consumed if the block fails: it was attempted."""
        decision = self.consume(
            org_id, metric, amount, idempotency_key=idempotency_key, on_unavailable=on_unavailable
        )
        if not decision.allowed:
            raise QuotaExceeded(decision)
        yield decision

    def reserve(
        self,
        org_id: str,
        metric: str,
        estimate: int,
        *,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> Reservation:
        """Hold `estimate` units against the limit for work whose size is known only
        afterwards; QuotaExceeded when refused. Use as `with tracker.reserve(...) as r:
        ...; r.commit(actual)`: leaving the block uncommitted releases the hold, and the
        kernel gives it back by itself after `ttl_seconds` (its default: 900)."""
        key = new_key("reserve", idempotency_key)
        call = reservation_call(org_id, metric, estimate, key, ttl_seconds)
        return Reservation(self._gate, call, on_unavailable, self._post)

    @contextlib.contextmanager
    def run(
        self,
        org_id: str,
        run_id: str | None = None,
        *,
        on_unavailable: OnUnavailable | None = None,
    ) -> Iterator[Decision]:
        """Admit one playbook run: consume one `playbook_runs` keyed `run:<run_id>` before
        the block, or raise QuotaExceeded instead of running it. Entering the same run
        again replays its first decision: a retried run counts once."""
        with self.guard(
            org_id, PLAYBOOK_RUNS, idempotency_key=run_key(run_id), on_unavailable=on_unavailable
        ) as decision:
            yield decision

    def entitlements(self, org_id: str, *, refresh: bool = False) -> Entitlements:
        """The org's features and limits in one read, kept for the `cache_seconds` the
        kernel says (60) and read again after, or now with `refresh`. While the kernel is
        out of reach, the last ones read for the org are answered however old, and kept as
        if just read (the next calls do not wait for the kernel again); with none,
        TransportError. A refusal (an unknown org, a key without the scope) is raised."""
        now = time.monotonic()
        held = None if refresh else self._entitlements.fresh(org_id, now)
        if held is not None:
            return held
        call = entitlements_call(org_id)
        try:
            found = read_entitlements(self._post(call))
        except TransportError as exc:
            return _last_or_raise(self._entitlements, call, exc, now)
        self._entitlements.keep(found, now)
        return found

    def has_feature(self, org_id: str, key: str) -> bool:
        """Whether the org has the feature (granted with any value but false): see
        `entitlements()` for how long an answer is kept."""
        return self.entitlements(org_id).has_feature(key)

    def feature_value(self, org_id: str, key: str, default: Any = None) -> Any:
        """The org's value of the feature (`5`, `"priority"`, `True`), or `default`."""
        return self.entitlements(org_id).feature_value(key, default)

    def _admit_run(self, org_id: Any, run_id: Any) -> Decision:
        with self.run(org_id, run_id) as decision:
            return decision

    async def _admit_run_async(self, org_id: Any, run_id: Any) -> Decision:
        return await asyncio.to_thread(self._admit_run, org_id, run_id)

    def _decide(
        self, call: Request, choice: OnUnavailable | None, consume_key: str | None
    ) -> Decision:
        try:
            answer = self._post(call)
        except TransportError as exc:
            return self._gate.unreachable(call, choice, unreachable(exc), consume_key)
        return self._gate.learned(str(call.org_id), answer)

    def _post(self, call: Request) -> dict[str, Any]:
        """The kernel's answer to `call`, retried within `decision_timeout` while it is out
        of reach; TransportError (retryable: still out of reach) otherwise."""
        request = getattr(self._transport, "request", None)
        if request is None:
            raise _no_requests(self._transport)
        error = TransportError("no time left to ask the kernel", retryable=True)
        for wait, timeout in self._gate.schedule(time.monotonic):
            time.sleep(wait)
            try:
                return dict(request(call, timeout))
            except TransportError as exc:
                error = unreachable(exc)
        raise error


class AsyncQuotaCalls:
    """`AsyncUsageTracker`'s quota calls: awaited on the tracker's loop."""

    _gate: Gate
    _transport: AsyncTransport
    _entitlements: EntitlementsCache

    _admits_sync = False

    async def check(
        self,
        org_id: str,
        metric: str,
        amount: int = 1,
        *,
        on_unavailable: OnUnavailable | None = None,
    ) -> Decision:
        """See `UsageTracker.check`."""
        return await self._decide(check_call(org_id, metric, amount, None), on_unavailable, None)

    async def consume(
        self,
        org_id: str,
        metric: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> Decision:
        """See `UsageTracker.consume`."""
        key = new_key("consume", idempotency_key)
        return await self._decide(check_call(org_id, metric, amount, key), on_unavailable, key)

    @contextlib.asynccontextmanager
    async def guard(
        self,
        org_id: str,
        metric: str,
        amount: int = 1,
        *,
        idempotency_key: str | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> AsyncIterator[Decision]:
        """`async with tracker.guard(...)`: see `UsageTracker.guard`."""
        decision = await self.consume(
            org_id, metric, amount, idempotency_key=idempotency_key, on_unavailable=on_unavailable
        )
        if not decision.allowed:
            raise QuotaExceeded(decision)
        yield decision

    def reserve(
        self,
        org_id: str,
        metric: str,
        estimate: int,
        *,
        ttl_seconds: int | None = None,
        idempotency_key: str | None = None,
        on_unavailable: OnUnavailable | None = None,
    ) -> AsyncReservation:
        """`async with tracker.reserve(...) as r: ...; await r.commit(actual)` (or `r =
        await tracker.reserve(...)`): see `UsageTracker.reserve`."""
        key = new_key("reserve", idempotency_key)
        call = reservation_call(org_id, metric, estimate, key, ttl_seconds)
        return AsyncReservation(self._gate, call, on_unavailable, self._post)

    @contextlib.asynccontextmanager
    async def run(
        self,
        org_id: str,
        run_id: str | None = None,
        *,
        on_unavailable: OnUnavailable | None = None,
    ) -> AsyncIterator[Decision]:
        """`async with tracker.run(...)`: see `UsageTracker.run`."""
        async with self.guard(
            org_id, PLAYBOOK_RUNS, idempotency_key=run_key(run_id), on_unavailable=on_unavailable
        ) as decision:
            yield decision

    async def entitlements(self, org_id: str, *, refresh: bool = False) -> Entitlements:
        """See `UsageTracker.entitlements`."""
        now = time.monotonic()
        held = None if refresh else self._entitlements.fresh(org_id, now)
        if held is not None:
            return held
        call = entitlements_call(org_id)
        try:
            found = read_entitlements(await self._post(call))
        except TransportError as exc:
            return _last_or_raise(self._entitlements, call, exc, now)
        self._entitlements.keep(found, now)
        return found

    async def has_feature(self, org_id: str, key: str) -> bool:
        """See `UsageTracker.has_feature`."""
        return (await self.entitlements(org_id)).has_feature(key)

    async def feature_value(self, org_id: str, key: str, default: Any = None) -> Any:
        """See `UsageTracker.feature_value`."""
        return (await self.entitlements(org_id)).feature_value(key, default)

    async def _admit_run_async(self, org_id: Any, run_id: Any) -> Decision:
        async with self.run(org_id, run_id) as decision:
            return decision

    async def _decide(
        self, call: Request, choice: OnUnavailable | None, consume_key: str | None
    ) -> Decision:
        try:
            answer = await self._post(call)
        except TransportError as exc:
            return self._gate.unreachable(call, choice, unreachable(exc), consume_key)
        return self._gate.learned(str(call.org_id), answer)

    async def _post(self, call: Request) -> dict[str, Any]:
        """See `UsageTracker._post`."""
        request = getattr(self._transport, "request", None)
        if request is None:
            raise _no_requests(self._transport)
        error = TransportError("no time left to ask the kernel", retryable=True)
        for wait, timeout in self._gate.schedule(time.monotonic):
            await asyncio.sleep(wait)
            try:
                return dict(await request(call, timeout))
            except TransportError as exc:
                error = unreachable(exc)
        raise error
