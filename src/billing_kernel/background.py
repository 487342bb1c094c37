"""What a worker process runs besides serving: delivering events and closing billing
periods (`billing-kernel worker`, and `serve` with BILLING_WORKER_IN_SERVER)."""

from __future__ import annotations

from typing import Protocol

from billing_kernel.invoices.closer import PeriodCloser
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.worker import DeliveryWorker


class Background(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


def background_tasks(kernel: Kernel) -> list[Background]:
    """The delivery worker, and the period closer unless BILLING_CLOSE_PERIODS is off."""
    tasks: list[Background] = [DeliveryWorker(kernel)]
    if kernel.settings.close_periods:
        tasks.append(PeriodCloser(kernel))
    return tasks
