"""The metric catalogue, kept in memory for a few seconds: it is read on every hot path and
changes only when an operator adds a metric."""

from __future__ import annotations

import time
from dataclasses import dataclass

from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import UnknownMetric
from billing_kernel.metrics.repository import MetricRepository
from billing_kernel.metrics.rules import Metric

CATALOGUE_TTL_SECONDS = 10.0
"""How long the metric catalogue is kept in memory: a new metric is seen within this."""


@dataclass
class CatalogueCache:
    """The catalogue last read and until when it may be used (shared by a kernel's views)."""

    metrics: list[Metric] | None = None
    fresh_until: float = 0.0


class MetricService:
    def __init__(self, transactions: Transactions, cache: CatalogueCache) -> None:
        self._tx = transactions
        self._cache = cache

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
