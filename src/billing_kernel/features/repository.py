"""An org's own feature values (`org_feature_overrides`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import org_feature_overrides
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.features.rules import FeatureValue, value_of, value_text


class FeatureRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def own_values(self, org_id: str) -> dict[str, FeatureValue]:
        """The org's own value of each feature it has one of."""
        own = org_feature_overrides.c
        result = await self._conn.execute(
            select(own.feature, own.value).where(own.org_id == org_id).order_by(own.feature)
        )
        return {row.feature: value_of(row.value) for row in result}

    async def set_own_value(
        self, org_id: str, feature: str, value: FeatureValue, now: datetime
    ) -> None:
        stmt = upsert(self._conn, org_feature_overrides).values(
            org_id=org_id, feature=feature, value=value_text(value), updated_at=now
        )
        own = org_feature_overrides.c
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[own.org_id, own.feature],
                set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
            )
        )

    async def clear_own_value(self, org_id: str, feature: str) -> None:
        own = org_feature_overrides.c
        await self._conn.execute(
            delete(org_feature_overrides).where(own.org_id == org_id, own.feature == feature)
        )
