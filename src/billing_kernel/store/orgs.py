"""Orgs, users, memberships, billing state and per-org limit overrides."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from billing_kernel.domain.billing_state import BillingStatus, MemberRole, OrgBillingState
from billing_kernel.store.database import upsert
from billing_kernel.store.tables import (
    org_billing_state,
    org_limit_overrides,
    org_members,
    orgs,
    users,
)

_EXISTING_ORG_IDS = select(orgs.c.org_id).where(
    orgs.c.org_id.in_(bindparam("org_ids", expanding=True))
)
"""Built once: every batch asks it."""


class OrgRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def ensure_orgs(self, org_ids: Iterable[str], now: datetime) -> None:
        """Create each org that does not exist yet (safe under concurrency)."""
        rows = [{"org_id": org_id, "created_at": now} for org_id in sorted(set(org_ids))]
        if rows:
            await self._conn.execute(
                upsert(self._conn, orgs).on_conflict_do_nothing(index_elements=[orgs.c.org_id]),
                rows,
            )

    async def save_org(self, org_id: str, name: str | None, now: datetime) -> None:
        """Create the org, or rename it."""
        stmt = upsert(self._conn, orgs).values(org_id=org_id, name=name, created_at=now)
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[orgs.c.org_id], set_={"name": stmt.excluded.name}
            )
        )

    async def org_name(self, org_id: str) -> str | None:
        return (
            await self._conn.execute(select(orgs.c.name).where(orgs.c.org_id == org_id))
        ).scalar_one_or_none()

    async def existing_org_ids(self, org_ids: Iterable[str]) -> set[str]:
        result = await self._conn.execute(_EXISTING_ORG_IDS, {"org_ids": list(set(org_ids))})
        return set(result.scalars())

    async def lock_org(self, org_id: str) -> bool:
        """Serialize membership changes of one org (a row lock on PostgreSQL; SQLite's
        transactions already hold the database write lock). False if the org does not exist."""
        query = select(orgs.c.org_id).where(orgs.c.org_id == org_id)
        if self._conn.dialect.name == "postgresql":
            query = query.with_for_update()
        return (await self._conn.execute(query)).first() is not None

    async def ensure_user(self, user_id: str, email: str | None, now: datetime) -> None:
        stmt = upsert(self._conn, users).values(user_id=user_id, email=email, created_at=now)
        if email is None:
            await self._conn.execute(stmt.on_conflict_do_nothing(index_elements=[users.c.user_id]))
        else:
            await self._conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[users.c.user_id], set_={"email": stmt.excluded.email}
                )
            )

    async def put_member(self, org_id: str, user_id: str, role: MemberRole, now: datetime) -> None:
        stmt = upsert(self._conn, org_members).values(
            org_id=org_id, user_id=user_id, role=role.value, created_at=now, updated_at=now
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[org_members.c.org_id, org_members.c.user_id],
                set_={"role": stmt.excluded.role, "updated_at": stmt.excluded.updated_at},
            )
        )

    async def remove_member(self, org_id: str, user_id: str) -> bool:
        result = await self._conn.execute(
            delete(org_members).where(
                org_members.c.org_id == org_id, org_members.c.user_id == user_id
            )
        )
        return result.rowcount > 0

    async def list_members(self, org_id: str) -> list[tuple[str, MemberRole]]:
        result = await self._conn.execute(
            select(org_members.c.user_id, org_members.c.role)
            .where(org_members.c.org_id == org_id)
            .order_by(org_members.c.user_id)
        )
        return [(user_id, MemberRole(role)) for user_id, role in result]

    async def memberships_of(self, user_id: str) -> dict[str, MemberRole]:
        """The orgs the user belongs to, with their role in each."""
        result = await self._conn.execute(
            select(org_members.c.org_id, org_members.c.role).where(org_members.c.user_id == user_id)
        )
        return {org_id: MemberRole(role) for org_id, role in result}

    async def count_members(self, org_id: str) -> int:
        result = await self._conn.execute(
            select(func.count()).select_from(org_members).where(org_members.c.org_id == org_id)
        )
        return int(result.scalar_one())

    async def get_billing_state(self, org_id: str) -> OrgBillingState | None:
        row = (
            await self._conn.execute(
                select(org_billing_state).where(org_billing_state.c.org_id == org_id)
            )
        ).first()
        if row is None:
            return None
        return OrgBillingState(
            org_id=row.org_id,
            plan_slug=row.plan_slug,
            status=BillingStatus(row.status),
            trial_ends_at=row.trial_ends_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )

    async def seed_billing_states(self, states: Iterable[OrgBillingState]) -> None:
        """Insert each state whose org has none yet; an existing state is left as it is, so
        concurrent first touches of one org leave exactly one row."""
        rows = [
            {
                "org_id": s.org_id,
                "plan_slug": s.plan_slug,
                "status": s.status.value,
                "trial_ends_at": s.trial_ends_at,
                "created_at": s.created_at,
                "updated_at": s.updated_at,
            }
            for s in sorted(states, key=lambda s: s.org_id)
        ]
        if rows:
            await self._conn.execute(
                upsert(self._conn, org_billing_state).on_conflict_do_nothing(
                    index_elements=[org_billing_state.c.org_id]
                ),
                rows,
            )

    async def set_plan(self, org_id: str, plan_slug: str, now: datetime) -> None:
        await self._conn.execute(
            update(org_billing_state)
            .where(org_billing_state.c.org_id == org_id)
            .values(plan_slug=plan_slug, updated_at=now)
        )

    async def get_limit_overrides(self, org_id: str) -> dict[str, int | None]:
        result = await self._conn.execute(
            select(org_limit_overrides.c.metric, org_limit_overrides.c.included_quantity).where(
                org_limit_overrides.c.org_id == org_id
            )
        )
        return dict(result.all())

    async def set_limit_override(
        self, org_id: str, metric: str, included_quantity: int | None, now: datetime
    ) -> None:
        stmt = upsert(self._conn, org_limit_overrides).values(
            org_id=org_id, metric=metric, included_quantity=included_quantity, updated_at=now
        )
        await self._conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[org_limit_overrides.c.org_id, org_limit_overrides.c.metric],
                set_={
                    "included_quantity": stmt.excluded.included_quantity,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
        )

    async def clear_limit_override(self, org_id: str, metric: str) -> None:
        await self._conn.execute(
            delete(org_limit_overrides).where(
                org_limit_overrides.c.org_id == org_id, org_limit_overrides.c.metric == metric
            )
        )
