"""Orgs and their billing state."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, case, delete, func, literal, or_, select, update

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import (
    org_aliases,
    org_billing_state,
    orgs,
    plans,
    scheduled_plan_changes,
    subscription_history,
)
from billing_kernel.db.types import UTCDateTime
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.orgs.rules import (
    BillingStatus,
    Org,
    OrgBillingState,
    OrgOrigin,
    ScheduledChange,
    billable,
)

_ORGS = select(
    orgs.c.org_id,
    orgs.c.name,
    orgs.c.created_at.label("org_created_at"),
    orgs.c.created_via,
    org_billing_state.c.plan_slug,
    org_billing_state.c.plan_version,
    org_billing_state.c.status,
    org_billing_state.c.trial_ends_at,
    org_billing_state.c.created_at,
    org_billing_state.c.updated_at,
    org_billing_state.c.status_since,
).join(org_billing_state, org_billing_state.c.org_id == orgs.c.org_id)


def _state(row: Any) -> OrgBillingState:
    return OrgBillingState(
        org_id=row.org_id,
        plan_slug=row.plan_slug,
        plan_version=row.plan_version,
        status=BillingStatus(row.status),
        trial_ends_at=row.trial_ends_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        status_since=row.status_since,
    )


def _org(row: Any) -> Org:
    return Org(
        org_id=row.org_id,
        name=row.name,
        created_at=row.org_created_at,
        created_via=OrgOrigin(row.created_via),
        state=_state(row),
    )


_EXISTING_ORG_IDS = select(orgs.c.org_id).where(
    orgs.c.org_id.in_(bindparam("org_ids", expanding=True))
)
"""Built once: every batch asks it."""


class OrgRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

    async def ensure_orgs(
        self, org_ids: Iterable[str], now: datetime, created_via: OrgOrigin
    ) -> set[str]:
        """Create each org that does not exist yet (safe under concurrency); the ids of those
        this statement created (a concurrent creator's are not among them)."""
        rows = [
            {"org_id": org_id, "created_at": now, "created_via": created_via.value}
            for org_id in sorted(set(org_ids))
        ]
        if not rows:
            return set()
        result = await self._conn.execute(
            upsert(self._conn, orgs)
            .on_conflict_do_nothing(index_elements=[orgs.c.org_id])
            .returning(orgs.c.org_id),
            rows,
        )
        return set(result.scalars())

    async def save_org(
        self, org_id: str, name: str | None, now: datetime, created_via: OrgOrigin
    ) -> None:
        """Create the org, or rename it."""
        stmt = upsert(self._conn, orgs).values(
            org_id=org_id, name=name, created_at=now, created_via=created_via.value
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[orgs.c.org_id], set_={"name": stmt.excluded.name}
            )
        )

    async def get_org(self, org_id: str) -> Org | None:
        """The org with its billing state (None if either is missing)."""
        row = (await self._conn.execute(_ORGS.where(orgs.c.org_id == org_id))).first()
        return None if row is None else _org(row)

    async def list_orgs(
        self,
        *,
        after: str | None,
        limit: int,
        plan_slug: str | None = None,
        status: BillingStatus | None = None,
        org_id: str | None = None,
    ) -> list[Org]:
        """Up to `limit` orgs in id order, after the id `after` (keyset pagination: an org
        created meanwhile never shifts the pages), optionally of one plan, status or id."""
        query = _ORGS.order_by(orgs.c.org_id).limit(limit)
        if after is not None:
            query = query.where(orgs.c.org_id > after)
        if plan_slug is not None:
            query = query.where(org_billing_state.c.plan_slug == plan_slug)
        if status is not None:
            query = query.where(org_billing_state.c.status == status.value)
        if org_id is not None:
            query = query.where(orgs.c.org_id == org_id)
        return [_org(row) for row in await self._conn.execute(query)]

    async def existing_org_ids(self, org_ids: Iterable[str]) -> set[str]:
        result = await self._conn.execute(_EXISTING_ORG_IDS, {"org_ids": list(set(org_ids))})
        return set(result.scalars())

    async def aliases_of(self, org_id: str) -> list[str]:
        query = select(org_aliases.c.alias).where(org_aliases.c.org_id == org_id)
        return sorted((await self._conn.execute(query.order_by(org_aliases.c.alias))).scalars())

    async def alias_owners(self, aliases: Iterable[str]) -> dict[str, str]:
        """The org each of `aliases` names, for those that name one."""
        query = select(org_aliases.c.alias, org_aliases.c.org_id).where(
            org_aliases.c.alias.in_(list(set(aliases)))
        )
        return {row.alias: row.org_id for row in await self._conn.execute(query)}

    async def replace_aliases(self, org_id: str, aliases: Iterable[str], now: datetime) -> set[str]:
        """Give the org exactly `aliases`; those another org holds (taken meanwhile, past the
        caller's check) are left out and returned."""
        await self._conn.execute(delete(org_aliases).where(org_aliases.c.org_id == org_id))
        wanted = set(aliases)
        if not wanted:
            return set()
        statement = (
            upsert(self._conn, org_aliases)
            .values([{"alias": alias, "org_id": org_id, "created_at": now} for alias in wanted])
            .on_conflict_do_nothing(index_elements=["alias"])
            .returning(org_aliases.c.alias)
        )
        return wanted - set((await self._conn.execute(statement)).scalars())

    async def lock_org(self, org_id: str) -> bool:
        """Serialize membership changes of one org (a row lock on PostgreSQL; SQLite's
        transactions already hold the database write lock). False if the org does not exist."""
        query = select(orgs.c.org_id).where(orgs.c.org_id == org_id)
        if self._conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return (await self._conn.execute(query)).first() is not None

    async def lock_billing_state(self, org_id: str) -> None:
        """Hold the org's billing state row until the transaction ends (PostgreSQL; SQLite's
        transactions already hold the database write lock)."""
        if self._conn.dialect.name == "postgresql":
            query = select(org_billing_state.c.org_id).where(org_billing_state.c.org_id == org_id)
            await self._conn.execute(query.with_for_update())

    async def get_billing_state(self, org_id: str) -> OrgBillingState | None:
        row = (
            await self._conn.execute(
                select(org_billing_state).where(org_billing_state.c.org_id == org_id)
            )
        ).first()
        return None if row is None else _state(row)

    async def seed_billing_states(self, states: Iterable[OrgBillingState]) -> None:
        """Insert each state whose org has none yet; an existing state is left as it is, so
        concurrent first touches of one org leave exactly one row."""
        rows = [
            {
                "org_id": s.org_id,
                "plan_slug": s.plan_slug,
                "plan_version": s.plan_version,
                "status": s.status.value,
                "trial_ends_at": s.trial_ends_at,
                "created_at": s.created_at,
                "updated_at": s.updated_at,
                "status_since": s.status_since,
            }
            for s in sorted(states, key=lambda s: s.org_id)
        ]
        if rows:
            result = await self._conn.execute(
                upsert(self._conn, org_billing_state)
                .on_conflict_do_nothing(index_elements=[org_billing_state.c.org_id])
                .returning(org_billing_state.c.org_id),
                rows,
            )
            seeded = list(result.scalars())
            if seeded:  # one statement, however many orgs a batch created
                await self._record_history(org_billing_state.c.org_id.in_(seeded), None)

    async def record_history(self, org_id: str, now: datetime) -> None:
        """Add the org's billing state as it is now to its subscription history, valid from
        `now` (see `invoices`)."""
        await self._record_history(org_billing_state.c.org_id == org_id, now)

    async def _record_history(self, which: ColumnElement[bool], since: datetime | None) -> None:
        """The billing states `which` selects, into the history from `since` (None: from
        when each state was created)."""
        state = org_billing_state.c
        valid_from = state.created_at if since is None else literal(since, UTCDateTime)
        await self._conn.execute(
            subscription_history.insert().from_select(
                ["org_id", "valid_from", "plan_slug", "plan_version", "status"],
                select(state.org_id, valid_from, state.plan_slug, state.plan_version, state.status)
                .where(which)
                .order_by(state.org_id),
            )
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
