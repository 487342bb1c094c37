"""The usage-tracking SDK with the kernel in the same process: a transport that records
through the usage service, no HTTP in between.

    tracker = in_process_tracker(kernel.usage)
    tracker.track("acme", "tokens", 1532)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from billing_kernel.errors import DatabaseUnavailable
from billing_kernel.usage.rules import UsageReport
from billing_kernel.usage.service import UsageService
from billing_kernel_sdk import AsyncUsageTracker, EventResult, TransportError


class InProcessTransport:
    """Records batches through the kernel's usage service in the same process (a monolith
    that embeds the kernel): the same guarantees as HTTP, without the network."""

    def __init__(self, usage: UsageService) -> None:
        self._usage = usage

    async def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        try:
            result = await self._usage.record_batch(
                [
                    UsageReport(
                        e["org_id"],
                        e["metric"],
                        e["quantity"],
                        e["idempotency_key"],
                        datetime.fromisoformat(e["occurred_at"]),
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


def in_process_tracker(usage: UsageService, **options: Any) -> AsyncUsageTracker:
    """An AsyncUsageTracker that records through a kernel's usage service (`kernel.usage`)
    directly; `options` as for the tracker (spool_dir, flush_interval, ...)."""
    return AsyncUsageTracker(transport=InProcessTransport(usage), **options)
