"""What invoices are computed from that no other capability serves: the subscription
history (written by `orgs`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from billing_kernel.db.tables import subscription_history
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.orgs.rules import BillingStatus


class InvoiceRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def history(
        self, org_id: str, before: datetime
    ) -> list[tuple[datetime, str, int, BillingStatus]]:
        """The org's changes made in force before `before`, in the order they were made:
        (from when, plan, plan version, status)."""
        h = subscription_history.c
        result = await self._conn.execute(
            select(h.valid_from, h.plan_slug, h.plan_version, h.status)
            .where(h.org_id == org_id, h.valid_from < before)
            .order_by(h.change_id)
        )
        return [
            (r.valid_from, r.plan_slug, r.plan_version, BillingStatus(r.status)) for r in result
        ]
