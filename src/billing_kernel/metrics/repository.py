"""The metric catalogue, as stored."""

from __future__ import annotations

from sqlalchemy import select

from billing_kernel.db.tables import metrics
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.metrics.rules import Aggregation, Metric


class MetricRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def list_metrics(self) -> list[Metric]:
        """The metric catalogue, in display order."""
        result = await self._conn.execute(
            select(metrics).order_by(metrics.c.position, metrics.c.key)
        )
        return [
            Metric(key=r.key, name=r.name, unit=r.unit, aggregation=Aggregation(r.aggregation))
            for r in result
        ]
