"""PostgreSQL row-level security: a user's transactions see only their own orgs' rows."""

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import ProgrammingError

from billing_kernel.domain.billing_state import MemberRole
from billing_kernel.store.database import Database
from billing_kernel.store.tables import ORG_SCOPED_TABLES, org_members, usage_events, users
from tests.conftest import Clock, make_service, new_id

pytestmark = pytest.mark.anyio


async def two_orgs(database: Database, clock: Clock) -> tuple[str, str, str, str]:
    service = make_service(database, clock)
    org_a, org_b, user_a, user_b = new_id("a"), new_id("b"), new_id("user-a"), new_id("user-b")
    for org_id, user_id in ((org_a, user_a), (org_b, user_b)):
        await service.create_org(org_id)
        await service.add_org_member(org_id, user_id, MemberRole.OWNER)
        await service.record_usage(org_id, "tokens", 100, idempotency_key="k")
        await service.set_org_limit_override(org_id, "tokens", 5)
    return org_a, org_b, user_a, user_b


async def test_a_user_of_org_a_reads_no_row_of_org_b(pg_database: Database, clock: Clock) -> None:
    org_a, org_b, user_a, _ = await two_orgs(pg_database, clock)
    async with pg_database.transaction(acting_user=user_a) as conn:
        is_superuser = (
            await conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
        ).scalar_one()
        assert is_superuser is False
        for table in ORG_SCOPED_TABLES:
            seen = set((await conn.execute(select(table.c.org_id))).scalars())
            assert seen == {org_a}, table.name
        assert set((await conn.execute(select(users.c.user_id))).scalars()) == {user_a}
        assert (
            await conn.execute(select(org_members.c.user_id).where(org_members.c.org_id == org_b))
        ).first() is None


async def test_a_user_in_no_org_sees_nothing_and_the_kernel_role_sees_all(
    pg_database: Database, clock: Clock
) -> None:
    org_a, org_b, _, _ = await two_orgs(pg_database, clock)
    async with pg_database.transaction(acting_user=new_id("stranger")) as conn:
        for table in ORG_SCOPED_TABLES:
            assert (await conn.execute(select(table.c.org_id))).first() is None, table.name
    async with pg_database.transaction() as conn:
        seen = set((await conn.execute(select(usage_events.c.org_id))).scalars())
        assert {org_a, org_b} <= seen


async def test_the_user_role_cannot_write(pg_database: Database, clock: Clock) -> None:
    org_a, _, user_a, _ = await two_orgs(pg_database, clock)
    with pytest.raises(ProgrammingError, match="permission denied"):
        async with pg_database.transaction(acting_user=user_a) as conn:
            await conn.execute(
                insert(usage_events).values(
                    org_id=org_a,
                    idempotency_key="sneaky",
                    metric="tokens",
                    quantity=1,
                    occurred_at=clock.now,
                    received_at=clock.now,
                    period_start=clock.now.date(),
                )
            )
