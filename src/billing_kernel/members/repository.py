"""Users and their memberships: who is in which org, with what role."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select

from billing_kernel.db.database import upsert
from billing_kernel.db.tables import org_members, users
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.members.rules import MemberRole


class MemberRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._conn = uow.connection

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

    async def emails_of(self, org_id: str, roles: Iterable[MemberRole]) -> list[str]:
        """The email addresses of the org's members in `roles` (those that have one)."""
        result = await self._conn.execute(
            select(users.c.email)
            .join(org_members, org_members.c.user_id == users.c.user_id)
            .where(
                org_members.c.org_id == org_id,
                org_members.c.role.in_([str(r) for r in roles]),
                users.c.email.is_not(None),
            )
            .order_by(users.c.email)
        )
        return [email for email in result.scalars() if email]

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
