"""An org's subscription as it changes: its plan, its status, the history each change adds
to, and the change it has scheduled."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, delete, func, or_, select, update

from billing_kernel.db.history import add_to_history
from billing_kernel.db.tables import (
    org_billing_state,
    plans,
    scheduled_plan_changes,
    subscription_history,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.orgs.rules import BillingStatus, billable
from billing_kernel.subscriptions.rules import ScheduledChange


class SubscriptionRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def lock_billing_state(self, org_id: str) -> None:
        """Hold the org's billing state row until the transaction ends (PostgreSQL; SQLite's
        transactions already hold the database write lock)."""
        if self._conn.dialect.name == "postgresql":
            query = select(org_billing_state.c.org_id).where(org_billing_state.c.org_id == org_id)
            await self._conn.execute(query.with_for_update())

    async def record_history(self, org_id: str, now: datetime) -> None:
        """Add the org's billing state as it is now to its subscription history, valid from
        `now` (see `invoices`)."""
        await self._conn.execute(
            add_to_history(org_billing_state.c.org_id == org_id, now, self._conn.dialect.name)
        )

    async def set_plan(self, org_id: str, plan_slug: str, version: int, now: datetime) -> None:
        await self._conn.execute(
            update(org_billing_state)
            .where(org_billing_state.c.org_id == org_id)
            .values(plan_slug=plan_slug, plan_version=version, updated_at=now)
        )

    async def billed_currencies(self, org_id: str, since: datetime) -> set[str]:
        """The currencies of the plans the org was on, in a billed status, from `since` on
        (the change in force at `since` included)."""
        h, p = subscription_history.c, plans.c
        in_force_then = (
            select(func.max(h.change_id))
            .where(h.org_id == org_id, h.valid_from < since)
            .scalar_subquery()
        )
        result = await self._conn.execute(
            select(p.currency, h.status)
            .join(plans, p.slug == h.plan_slug)
            .where(h.org_id == org_id, or_(h.valid_from >= since, h.change_id == in_force_then))
        )
        return {currency for currency, status in result if billable(BillingStatus(status))}

    async def last_change(self, org_id: str) -> datetime | None:
        h = subscription_history.c
        query = select(func.max(h.valid_from)).where(h.org_id == org_id)
        found: datetime | None = (await self._conn.execute(query)).scalar_one()
        return found

    async def scheduled_change(self, org_id: str) -> ScheduledChange | None:
        s = scheduled_plan_changes.c
        row = (
            await self._conn.execute(select(scheduled_plan_changes).where(s.org_id == org_id))
        ).first()
        if row is None:
            return None
        return ScheduledChange(row.plan_slug, row.plan_version, row.effective_at, row.requested_at)

    async def schedule_change(self, org_id: str, change: ScheduledChange) -> None:
        """The org's scheduled change, replacing any it had."""
        await self.cancel_scheduled(org_id)
        await self._conn.execute(
            scheduled_plan_changes.insert().values(
                org_id=org_id,
                plan_slug=change.plan_slug,
                plan_version=change.plan_version,
                effective_at=change.effective_at,
                requested_at=change.requested_at,
            )
        )

    async def cancel_scheduled(self, org_id: str) -> bool:
        result = await self._conn.execute(
            delete(scheduled_plan_changes).where(scheduled_plan_changes.c.org_id == org_id)
        )
        return bool(result.rowcount)

    async def orgs_with_changes_due(self, now: datetime) -> list[str]:
        s = scheduled_plan_changes.c
        query = select(s.org_id).where(s.effective_at <= now).order_by(s.org_id)
        return list((await self._conn.execute(query)).scalars())

    async def set_status(self, org_id: str, status: BillingStatus, now: datetime) -> None:
        """Put the org in `status`; `status_since` moves only when the status changes."""
        state = org_billing_state.c
        await self._conn.execute(
            update(org_billing_state)
            .where(state.org_id == org_id)
            .values(
                status=status.value,
                status_since=case((state.status == status.value, state.status_since), else_=now),
                updated_at=now,
            )
        )
