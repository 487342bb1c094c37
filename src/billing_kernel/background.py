"""What a worker process runs besides serving: delivering events, closing billing periods
and collecting invoices through Stripe (`billing-kernel worker`, and `serve` with
BILLING_WORKER_IN_SERVER), each built here with the services it needs of the kernel: the
workers themselves know no Kernel."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from billing_kernel.invoices.closer import PeriodCloser
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.worker import DeliveryWorker
from billing_kernel.payments.collector import PaymentCollector
from billing_kernel.telemetry.instruments import beat


def beating(task: str, kernel: Kernel) -> Callable[[], Awaitable[None]]:
    """What a task does as each round begins: its heartbeat for the operators' metrics
    (`billing_worker_heartbeat_timestamp_seconds`), and in dev mode reading the sandbox clock."""

    async def before_round() -> None:
        beat(task)
        await kernel.sandbox.refresh()

    return before_round


class Background(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


def delivery_worker(kernel: Kernel) -> DeliveryWorker:
    """The delivery worker, with the services it needs of `kernel`."""
    return DeliveryWorker(
        kernel.settings,
        kernel.database,
        notifications=kernel.notifications,
        orgs=kernel.orgs,
        metrics=kernel.metrics,
        members=kernel.members,
        clock=kernel.now,
        before_round=beating("deliveries", kernel),  # and dev mode's sandbox clock
    )


def period_closer(kernel: Kernel) -> PeriodCloser:
    """The period closer, closing through `kernel`'s invoices every
    BILLING_CLOSE_INTERVAL_SECONDS."""
    return PeriodCloser(
        kernel.invoices,
        interval_seconds=kernel.settings.close_interval_seconds,
        before_round=beating("close", kernel),
    )


def payment_collector(kernel: Kernel) -> PaymentCollector:
    """The payment collector, collecting through `kernel`'s payments and refunding its
    credit notes every BILLING_COLLECT_INTERVAL_SECONDS."""
    return PaymentCollector(
        kernel.payments,
        refunds=kernel.credit_notes.refund_due,
        interval_seconds=kernel.settings.collect_interval_seconds,
        before_round=beating("collect", kernel),
    )


def background_tasks(kernel: Kernel) -> list[Background]:
    """The delivery worker, the period closer unless BILLING_CLOSE_PERIODS is off, and the
    payment collector where the deployment has a Stripe key."""
    tasks: list[Background] = [delivery_worker(kernel)]
    if kernel.settings.close_periods:
        tasks.append(period_closer(kernel))
    if kernel.payments.enabled:
        tasks.append(payment_collector(kernel))
    return tasks
