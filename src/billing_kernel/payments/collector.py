"""The background task that collects invoices through Stripe: every
BILLING_COLLECT_INTERVAL_SECONDS it finishes attempts whose answer was lost and makes the
first attempt at each open invoice above zero (`PaymentService.collect_due`), then gives
back what credit notes owe (`refunds`: `CreditNoteService.refund_due`). Run by
`billing-kernel worker` and, with BILLING_WORKER_IN_SERVER, by the server, wherever the
deployment has a Stripe key: Stripe is only ever called from here, never inside a request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from billing_kernel.payments.service import PaymentService

logger = logging.getLogger(__name__)


class PaymentCollector:
    def __init__(
        self,
        payments: PaymentService,
        *,
        interval_seconds: float,
        refunds: Callable[[], Awaitable[Sequence[object]]] | None = None,
        before_round: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._payments = payments
        self._refunds = refunds
        self._interval = interval_seconds
        self._before_round = before_round
        self._stopping = asyncio.Event()
        self.rounds = 0

    async def run(self) -> None:
        """Rounds until `stop()`; a round that fails (the database or Stripe away) is
        logged and tried again at the next."""
        while not self._stopping.is_set():
            try:
                if self._before_round is not None:
                    await self._before_round()
                made: list[object] = [*await self._payments.collect_due()]
                if self._refunds is not None:
                    made += await self._refunds()
            except Exception:
                logger.exception("collecting invoices failed; trying again later")
            else:
                if made:
                    logger.info("collection attempts and refunds settled: %d", len(made))
            self.rounds += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)

    def stop(self) -> None:
        self._stopping.set()
