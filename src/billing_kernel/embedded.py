"""The usage-tracking SDK with the kernel in the same process: a transport that records
through the kernel's services, no HTTP in between.

    tracker = in_process_tracker(kernel)
    tracker.track("acme", "tokens", 1532)
    async with tracker.guard("acme", "playbook_runs"):
        ...
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from billing_kernel.errors import BillingError, DatabaseUnavailable
from billing_kernel.features.schemas import EntitlementsOut
from billing_kernel.quota.schemas import CheckIn, CheckOut
from billing_kernel.reservations.schemas import CommitIn, ReservationIn, ReservationOut
from billing_kernel.usage.rules import UsageReport
from billing_kernel.usage.service import UsageService
from billing_kernel_sdk import AsyncUsageTracker, EventResult, TransportError
from billing_kernel_sdk.transport import CHECK_PATH, ENTITLEMENTS_PATH, RESERVATIONS_PATH, Request

if TYPE_CHECKING:
    from billing_kernel.kernel import Kernel


class InProcessTransport:
    """Records batches through the kernel's usage service in the same process (a monolith
    that embeds the kernel): the same guarantees as HTTP, without the network."""

    def __init__(self, usage: UsageService) -> None:
        self._usage = usage

    async def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        try:
            result = await self._usage.record_request(
                [
                    UsageReport(
                        e["org_id"],
                        e.get("metric"),
                        e.get("quantity"),
                        e["idempotency_key"],
                        _time(e.get("occurred_at")),
                        e.get("properties"),
                        e.get("event"),
                        _time(e.get("observed_at")),
                    )
                    for e in events
                ]
            )
        except DatabaseUnavailable as exc:  # momentary: keep the events, as HTTP's 503
            raise TransportError(
                f"could not record usage: {exc!r}", retryable=True, status=503
            ) from None
        except Exception as exc:  # the kernel failed on this batch, as HTTP's 500
            raise TransportError(
                f"could not record usage: {exc!r}", retryable=True, status=500
            ) from None
        return [
            EventResult(o.status.value, None if o.error is None else o.error.code)
            for o in result.outcomes
        ]

    async def aclose(self) -> None:
        pass


class InProcessKernelTransport(InProcessTransport):
    """Batches as InProcessTransport, and the quota calls (checks, consumes, reservations)
    through the kernel's services: the HTTP API's bodies and answers, without HTTP."""

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel.usage)
        self._kernel = kernel

    async def request(self, call: Request, timeout: float) -> dict[str, Any]:
        try:
            return await self._answer(call)
        except DatabaseUnavailable as exc:  # momentary, as HTTP's 503
            raise TransportError(f"{exc}", retryable=True, status=503) from None
        except BillingError as exc:  # what is wrong with the call, as HTTP's 4xx
            raise TransportError(
                f"kernel answered {exc.status}: {exc}",
                retryable=False,
                status=exc.status,
                code=exc.code,
            ) from None
        except ValueError as exc:  # a body the API's schema refuses, as HTTP's 422
            raise TransportError(f"{exc}", retryable=False, status=422) from None

    async def _answer(self, call: Request) -> dict[str, Any]:
        kernel = self._kernel
        if call.path == CHECK_PATH:
            assert call.org_id is not None
            asked = CheckIn.model_validate(call.body)
            if asked.idempotency_key is None:
                decided = await kernel.quota.check(call.org_id, asked.metric, asked.amount)
                return CheckOut.of(decided).model_dump(mode="json")
            consumed = await kernel.quota.consume(
                call.org_id, asked.metric, asked.amount, idempotency_key=asked.idempotency_key
            )
            decision = consumed.decision
            return CheckOut.of(decision, consumed=decision.allowed).model_dump(mode="json")
        if call.path == ENTITLEMENTS_PATH:
            assert call.org_id is not None
            found = await kernel.features.entitlements(call.org_id)
            return EntitlementsOut.of(found).model_dump(mode="json")
        if call.path == RESERVATIONS_PATH:
            held = ReservationIn.model_validate(call.body)
            made = await kernel.quota.reserve(
                held.org_id,
                held.metric,
                held.estimate,
                idempotency_key=held.idempotency_key,
                ttl_seconds=held.ttl_seconds,
            )
            answer = ReservationOut.of(made.reservation, kernel.now(), CheckOut.of(made.decision))
            return answer.model_dump(mode="json")
        reservation_id, _, action = call.path.removeprefix(RESERVATIONS_PATH + "/").partition("/")
        if action == "commit":
            quantity = CommitIn.model_validate(call.body).quantity
            settled = await kernel.reservations.commit(reservation_id, quantity)
        elif action == "release":
            settled = await kernel.reservations.release(reservation_id)
        else:
            raise ValueError(f"no quota call at {call.path}")
        return ReservationOut.of(settled, kernel.now()).model_dump(mode="json")


def in_process_tracker(kernel: Kernel, **options: Any) -> AsyncUsageTracker:
    """An AsyncUsageTracker that works through a kernel in the same process: `track()`
    through its usage service, and the quota calls (`check`, `consume`, `guard`,
    `reserve`, `run`) through its quota and reservation services. `options` as for the
    tracker (spool_dir, max_delay, on_unavailable, ...)."""
    return AsyncUsageTracker(transport=InProcessKernelTransport(kernel), **options)


def _time(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
