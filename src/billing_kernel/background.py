"""What a worker process runs besides serving: delivering events, closing billing periods,
collecting invoices through Stripe, and its upkeep (the months of usage lines made ahead,
what is past its retention forgotten) (`billing-kernel worker`, and `serve` with
BILLING_WORKER_IN_SERVER), each built here with the services it needs of the kernel: the
workers themselves know no Kernel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Protocol

from billing_kernel.invoices.closer import PeriodCloser
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.service import NotificationService
from billing_kernel.notifications.worker import DeliveryWorker
from billing_kernel.payments.collector import PaymentCollector
from billing_kernel.quota.service import QuotaService
from billing_kernel.telemetry.instruments import beat
from billing_kernel.usage.service import PartitionService, RetentionService

logger = logging.getLogger(__name__)

UPKEEP_EVERY = 3600.0
"""Seconds between two rounds of upkeep."""


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


class Upkeep:
    """Once every UPKEEP_EVERY (and as the worker starts): makes the months of usage lines
    ahead (PostgreSQL), and forgets what is past its retention, each in short batches:
    billing events with their finished deliveries (BILLING_DELIVERY_RETENTION_DAYS), quota
    decisions (BILLING_DECISION_RETENTION_DAYS) and usage events with their lines
    (BILLING_EVENT_RETENTION_MONTHS). A round that fails is logged and tried again at the
    next."""

    def __init__(
        self,
        partitions: PartitionService,
        retention: RetentionService,
        notifications: NotificationService,
        quota: QuotaService,
        *,
        delivery_days: int | None,
        decision_days: int | None,
        before_round: Callable[[], Awaitable[None]] | None = None,
        every: float = UPKEEP_EVERY,
    ) -> None:
        self._partitions = partitions
        self._retention = retention
        self._notifications = notifications
        self._quota = quota
        self._delivery_days = delivery_days
        self._decision_days = decision_days
        self._before_round = before_round
        self._every = every
        self._stopping = asyncio.Event()

    async def run_once(self) -> tuple[int, int]:
        """One round: how many billing events, and how many decisions, it forgot."""
        if self._before_round is not None:
            await self._before_round()
        made = await self._partitions.make_ahead()
        if made:
            logger.info("made the usage lines' partitions %s", ", ".join(made))
        events = decisions = 0
        if self._delivery_days is not None:
            events = await self._notifications.prune(timedelta(days=self._delivery_days))
            if events:
                logger.info("forgot %d billing event(s) past their retention", events)
        if self._decision_days is not None:
            decisions = await self._quota.prune_decisions(timedelta(days=self._decision_days))
            if decisions:
                logger.info("forgot %d quota decision(s) past their retention", decisions)
        await self._retention.forget_due()
        return events, decisions

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception:
                logger.exception("the worker's upkeep failed; trying again later")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._every)

    def stop(self) -> None:
        self._stopping.set()


def upkeep(kernel: Kernel) -> Upkeep:
    """The upkeep, with `kernel`'s partitions, usage retention, notifications and quota and
    their retention settings."""
    return Upkeep(
        kernel.partitions,
        kernel.retention,
        kernel.notifications,
        kernel.quota,
        delivery_days=kernel.settings.delivery_retention_days,
        decision_days=kernel.settings.decision_retention_days,
        before_round=beating("upkeep", kernel),
    )


def background_tasks(kernel: Kernel) -> list[Background]:
    """The delivery worker, the period closer unless BILLING_CLOSE_PERIODS is off, the
    payment collector where the deployment has a Stripe key, and the upkeep."""
    tasks: list[Background] = [delivery_worker(kernel), upkeep(kernel)]
    if kernel.settings.close_periods:
        tasks.append(period_closer(kernel))
    if kernel.payments.enabled:
        tasks.append(payment_collector(kernel))
    return tasks
