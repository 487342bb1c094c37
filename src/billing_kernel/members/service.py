"""Members of an org, and the seats they take: every change writes down the seat peaks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from billing_kernel.common.validation import validate_id, validate_text
from billing_kernel.db.unit_of_work import Transactions, UnitOfWork
from billing_kernel.errors import MemberNotFound
from billing_kernel.members.repository import MemberRepository
from billing_kernel.members.rules import ADMIN_ROLES, MemberRole
from billing_kernel.orgs.service import OrgService
from billing_kernel.usage.service import UsageService

MAX_EMAIL_LENGTH = 320


class MemberService:
    def __init__(
        self,
        transactions: Transactions,
        clock: Callable[[], datetime],
        orgs: OrgService,
        usage: UsageService,
    ) -> None:
        self._tx = transactions
        self._clock = clock
        self._orgs = orgs
        self._usage = usage

    async def add(
        self,
        org_id: str,
        user_id: str,
        role: MemberRole = MemberRole.MEMBER,
        *,
        email: str | None = None,
        uow: UnitOfWork | None = None,
    ) -> int:
        """Put the user in the org with `role` (or change their role); returns the seat count.

        The period's seat peak is raised in the same transaction.
        """
        validate_id(user_id, "user_id")
        now = self._clock()
        async with self._tx.begin(uow) as unit:
            await self._orgs.lock(org_id, unit)
            members = MemberRepository(unit)
            await members.ensure_user(user_id, validate_text(email, "email", MAX_EMAIL_LENGTH), now)
            before = await members.count_members(org_id)
            await members.put_member(org_id, user_id, MemberRole(role), now)
            seats = await members.count_members(org_id)
            await self._usage.record_seats(org_id, before, seats, now, unit)
            return seats

    async def remove(self, org_id: str, user_id: str, uow: UnitOfWork | None = None) -> int:
        """Take the user out of the org; returns the seat count. The period's peak keeps
        the count from before (the user held a seat this month)."""
        now = self._clock()
        async with self._tx.begin(uow) as unit:
            await self._orgs.lock(org_id, unit)
            members = MemberRepository(unit)
            before = await members.count_members(org_id)
            if not await members.remove_member(org_id, user_id):
                raise MemberNotFound(
                    f"user {user_id!r} is not a member of org {org_id!r}",
                    org_id=org_id,
                    user_id=user_id,
                )
            seats = await members.count_members(org_id)
            await self._usage.record_seats(org_id, before, seats, now, unit)
            return seats

    async def of_org(
        self, org_id: str, uow: UnitOfWork | None = None
    ) -> list[tuple[str, MemberRole]]:
        """The org's members and their roles, by user id; OrgNotFound for an unknown org."""
        async with self._tx.read(uow) as unit:
            await self._orgs.require(org_id, unit)
            return await MemberRepository(unit).list_members(org_id)

    async def admin_emails(self, org_id: str, uow: UnitOfWork | None = None) -> list[str]:
        """Where the org's owners and admins read email: the addresses they have."""
        async with self._tx.read(uow) as unit:
            return await MemberRepository(unit).emails_of(org_id, ADMIN_ROLES)

    async def memberships(
        self, user_id: str, uow: UnitOfWork | None = None
    ) -> dict[str, MemberRole]:
        """The orgs `user_id` is a member of, with the role in each."""
        async with self._tx.read(uow) as unit:
            return await MemberRepository(unit).memberships_of(user_id)

    async def seat_count(self, org_id: str, uow: UnitOfWork | None = None) -> int:
        """How many members the org has now."""
        async with self._tx.read(uow) as unit:
            return await MemberRepository(unit).count_members(org_id)
