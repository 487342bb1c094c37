"""The metric catalogue, as stored."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import func, select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import metrics, usage_events, usage_skips
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
                m.key,
                m.name,
                m.unit,
                m.aggregation,
                m.events,
                m.value_property,
                m.filters,
                m.required,
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

    async def skipped_in(self, period_start: date) -> dict[str, int]:
        """How many events each meter skipped in the month starting `period_start`, over
        every org (meters that skipped none are left out)."""
        s = usage_skips.c
        result = await self._conn.execute(
            select(s.metric, func.sum(s.events))
            .where(s.period_start == period_start)
            .group_by(s.metric)
        )
        return {metric: int(events) for metric, events in result}

    async def named_event_properties(
        self, names: Sequence[str], start: datetime, end: datetime, limit: int
    ) -> list[str | None]:
        """The properties (canonical JSON text, or None) of up to `limit` named events (not
        reports of a quantity) of these names that happened in [start, end), in no order."""
        e = usage_events.c
        result = await self._conn.execute(
            select(e.properties)
            .where(
                e.event.in_(names),
                e.quantity.is_(None),
                e.occurred_at >= start,
                e.occurred_at < end,
            )
            .limit(limit)
        )
        return list(result.scalars())


def _row(metric: Metric) -> dict[str, object]:
    return {
        "name": metric.name,
        "unit": metric.unit,
        "aggregation": metric.aggregation.value,
        "events": events_text(metric),
        "value_property": metric.value_property,
        "filters": filters_text(metric),
        "required": metric.required,
    }
