"""Orgs, their aliases, and the billing state each is seeded with."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select

from billing_kernel.db.database import upsert
from billing_kernel.db.history import add_to_history
from billing_kernel.db.tables import org_aliases, org_billing_state, orgs
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.orgs.rules import BillingStatus, Org, OrgBillingState, OrgOrigin

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
                which = org_billing_state.c.org_id.in_(seeded)
                await self._conn.execute(add_to_history(which, None, self._conn.dialect.name))
