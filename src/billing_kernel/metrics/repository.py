"""The metric catalogue, as stored."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import metrics
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.metrics.rules import Metric, events_text, filters_text, meter_from_stored


class MetricRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def list_metrics(self) -> list[Metric]:
        """The metric catalogue, in display order."""
        m = metrics.c
        result = await self._conn.execute(
            select(
                m.key, m.name, m.unit, m.aggregation, m.events, m.value_property, m.filters
            ).order_by(m.position, m.key)
        )
        return [meter_from_stored(*row) for row in result]

    async def insert(self, metric: Metric, now: datetime) -> bool:
        """Add `metric` after the others; False (nothing written) if its key is taken."""
        position = select(func.coalesce(func.max(metrics.c.position), 0) + 1).scalar_subquery()
        result = await self._conn.execute(
            upsert(self._conn, metrics)
            .values(_row(metric) | {"key": metric.key, "created_at": now, "position": position})
            .on_conflict_do_nothing(index_elements=[metrics.c.key])
            .returning(metrics.c.key)
        )
        return result.first() is not None

    async def update(self, metric: Metric) -> None:
        """Replace the stored definition of `metric` (its key, position and birth stay)."""
        await self._conn.execute(
            update(metrics).where(metrics.c.key == metric.key).values(_row(metric))
        )


def _row(metric: Metric) -> dict[str, object]:
    return {
        "name": metric.name,
        "unit": metric.unit,
        "aggregation": metric.aggregation.value,
        "events": events_text(metric),
        "value_property": metric.value_property,
        "filters": filters_text(metric),
    }
