"""The background task that closes billing periods: every BILLING_CLOSE_INTERVAL_SECONDS it
finalizes the invoices that are due (see `InvoiceService.close_due`). Run by `billing-kernel
worker` (as many side by side as you like) and, with BILLING_WORKER_IN_SERVER, by the
server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from billing_kernel.invoices.service import InvoiceService
from billing_kernel.telemetry.instruments import CLOSE_FAILURES

logger = logging.getLogger(__name__)


class PeriodCloser:
    def __init__(
        self,
        invoices: InvoiceService,
        *,
        interval_seconds: float,
        before_round: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._invoices = invoices
        self._interval = interval_seconds
        self._before_round = before_round
        self._stopping = asyncio.Event()
        self.closed = 0

    async def run(self) -> None:
        """Rounds until `stop()`; a round that fails (the database away) is logged and tried
        again at the next."""
        while not self._stopping.is_set():
            try:
                if self._before_round is not None:
                    await self._before_round()
                report = await self._invoices.close_due()
            except Exception:
                CLOSE_FAILURES.inc()
                logger.exception("closing billing periods failed; trying again later")
            else:
                if report.failed:
                    CLOSE_FAILURES.inc()
                self.closed += len(report.closed)
                if report.closed:
                    logger.info("finalized %d invoice(s)", len(report.closed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)

    def stop(self) -> None:
        self._stopping.set()
