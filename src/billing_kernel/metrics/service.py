"""The metric catalogue, kept in memory for a few seconds: it is read on every hot path and
changes only when an operator adds a metric."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import UnknownMetric
from billing_kernel.metrics.repository import MetricRepository
from billing_kernel.metrics.rules import (
    PREVIEW_EVENTS,
    MeterPreview,
    Metric,
    meter_change,
    preview_meter,
)

CATALOGUE_TTL_SECONDS = 10.0
"""How long the metric catalogue is kept in memory: a new metric is seen within this."""


@dataclass
class CatalogueCache:
    """The catalogue last read and until when it may be used (shared by a kernel's views)."""

    metrics: list[Metric] | None = None
    fresh_until: float = 0.0


class MetricService:
    def __init__(
        self, transactions: Transactions, cache: CatalogueCache, clock: Callable[[], datetime]
    ) -> None:
        self._tx = transactions
        self._cache = cache
        self._clock = clock

    async def catalogue(self, uow: UnitOfWork | None = None) -> list[Metric]:
        """Every metric, in display order, read at most every CATALOGUE_TTL_SECONDS."""
        cache = self._cache
        if cache.metrics is not None and cache.fresh_until > time.monotonic():
            return cache.metrics
        async with self._tx.read(uow) as unit:
            metrics = await MetricRepository(unit).list_metrics()
        cache.metrics, cache.fresh_until = metrics, time.monotonic() + CATALOGUE_TTL_SECONDS
        return metrics

    async def get(self, key: str, uow: UnitOfWork | None = None) -> Metric:
        """The metric named `key`; UnknownMetric if the catalogue has none."""
        for metric in await self.catalogue(uow):
            if metric.key == key:
                return metric
        raise UnknownMetric(f"unknown metric {key!r}", field="metric")

    async def by_key(self, uow: UnitOfWork | None = None) -> dict[str, Metric]:
        """The catalogue as a mapping from metric key to metric."""
        return {metric.key: metric for metric in await self.catalogue(uow)}

    async def define(self, meter: Metric) -> Defined:
        """Add `meter` to the catalogue, or make it the definition of the stored metric of its
        key from now on (InvalidInput for a change `meter_change` refuses), with what it would
        have made of last month's events (`preview_meter`). Events already counted stay as
        they were counted. This kernel sees it at once, others within
        CATALOGUE_TTL_SECONDS."""
        now = self._clock()
        last_month = BillingPeriod.containing(now).previous()
        async with self._tx.begin() as unit:
            metrics = MetricRepository(unit)
            created = await metrics.insert(meter, now)
            if not created:
                stored = {m.key: m for m in await metrics.list_metrics()}[meter.key]
                await metrics.update(meter_change(stored, meter))
            found = await metrics.named_event_properties(
                meter.listens_to, last_month.start, last_month.end, PREVIEW_EVENTS + 1
            )
        self._cache.metrics = None
        return Defined(created, preview_meter(meter, last_month, found))

    async def skipped_this_month(self, uow: UnitOfWork | None = None) -> dict[str, int]:
        """How many events each meter skipped this month (could not read its property
        from), over every org; meters that skipped none are left out."""
        async with self._tx.read(uow) as unit:
            return await MetricRepository(unit).skipped_in(
                BillingPeriod.containing(self._clock()).start.date()
            )


@dataclass(frozen=True, slots=True)
class Defined:
    created: bool
    """Whether the metric is new (else its definition changed)."""
    last_month: MeterPreview
    """What it would have made of last month's events of its names."""
