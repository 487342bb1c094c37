"""PostgreSQL row-level security: a user's transactions see only their own orgs' rows."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.exc import ProgrammingError

from billing_kernel.alerts.rules import Threshold
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import (
    ORG_SCOPED_TABLES,
    billing_events,
    invoice_lines,
    invoice_usage,
    invoices,
    org_members,
    payment_customers,
    payments,
    usage_events,
    usage_priced_months,
    usage_repeats,
    usage_skips,
    usage_unique_values,
    users,
)
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.discounts.rules import Coupon, Duration, Kind
from billing_kernel.errors import OrgNotFound
from billing_kernel.events.rules import FOR_OPERATORS
from billing_kernel.invoices.rules import close_failed_event
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.repository import OrgRepository
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin
from tests.conftest import Clock, make_kernel, new_id

pytestmark = pytest.mark.anyio


async def two_orgs(database: Database, clock: Clock) -> tuple[str, str, str, str]:
    kernel = make_kernel(database, clock)
    org_a, org_b, user_a, user_b = new_id("a"), new_id("b"), new_id("user-a"), new_id("user-b")
    coupon, _ = await kernel.discounts.create(
        Coupon(new_id("C"), "Ten", Kind.PERCENT, Decimal(10), Duration.FOREVER)
    )
    for org_id, user_id in ((org_a, user_a), (org_b, user_b)):
        await kernel.orgs.create(org_id, plan_slug="starter")
        await kernel.members.add(org_id, user_id, MemberRole.OWNER)
        await kernel.usage.record(org_id, "tokens", 100, idempotency_key="k")
        async with database.transaction() as conn:  # as a unique count's line leaves it
            period = BillingPeriod.containing(clock()).key
            await conn.execute(
                insert(usage_unique_values).values(
                    org_id=org_id, period_start=period, metric="tokens", value='"u1"'
                )
            )
            await conn.execute(  # as a meter that could not read an event leaves it
                insert(usage_skips).values(
                    org_id=org_id,
                    period_start=period,
                    metric="tokens",
                    events=1,
                    updated_at=clock(),
                )
            )
            await conn.execute(  # as a protocol's changed repeat leaves it
                insert(usage_repeats).values(
                    org_id=org_id, idempotency_key="k", times=1, last_at=clock()
                )
            )
            await conn.execute(  # as a month near the bound on amounts leaves it
                insert(usage_priced_months).values(
                    org_id=org_id, period_start=period, noted_at=clock()
                )
            )
        await kernel.quota.set_override(org_id, "tokens", 5)
        await kernel.features.set_own_value(org_id, "sso", True)
        await kernel.discounts.apply(org_id, coupon.code)
        await kernel.quota.consume(org_id, "tokens", 1, idempotency_key="consume")
        await kernel.quota.reserve(org_id, "tokens", 1, idempotency_key="reserve")
        await kernel.alerts.set_thresholds(org_id, "tokens", [Threshold(percent=50)])
        await kernel.subscriptions.set_status(
            org_id, BillingStatus.ACTIVE
        )  # its invoice bills a fee
        closed = Clock(BillingPeriod.containing(clock()).end + timedelta(days=2))
        invoice = await make_kernel(database, closed).invoices.close(
            org_id, BillingPeriod.containing(clock())
        )
        assert invoice is not None
        async with database.transaction() as conn:  # as collecting the invoice leaves them
            await conn.execute(
                insert(payment_customers).values(
                    org_id=org_id, stripe_customer_id=f"cus_{org_id}", claimed_at=clock()
                )
            )
            await conn.execute(
                insert(payments).values(
                    payment_id=f"pay_{org_id}",
                    invoice_id=invoice.invoice_id,
                    org_id=org_id,
                    attempt=1,
                    status="pending",
                    amount=invoice.total,
                    currency=invoice.currency,
                    created_at=clock(),
                    updated_at=clock(),
                )
            )
    for org_id in (org_a, org_b):  # after the closes, which make due changes take effect
        await kernel.plan_changes.change(org_id, "internal-dev")  # a downgrade, scheduled
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
        own = set((await conn.execute(select(invoices.c.invoice_id))).scalars())
        lines = set((await conn.execute(select(invoice_lines.c.invoice_id))).scalars())
        usage = set((await conn.execute(select(invoice_usage.c.invoice_id))).scalars())
        assert lines == usage == own  # through their invoices' policy
        assert (
            await conn.execute(select(org_members.c.user_id).where(org_members.c.org_id == org_b))
        ).first() is None


async def test_a_user_reads_the_events_about_their_org_but_not_the_operators(
    pg_database: Database, clock: Clock
) -> None:
    org_a, _, user_a, _ = await two_orgs(pg_database, clock)
    kernel = make_kernel(pg_database, clock)
    failed = close_failed_event(org_a, date(2026, 4, 1), "too large", clock())
    await kernel.events.record([failed])
    ev = billing_events.c
    async with pg_database.transaction(acting_user=user_a) as conn:
        seen = {tuple(row) for row in await conn.execute(select(ev.org_id, ev.event_type))}
    assert seen != set()
    assert {org for org, _ in seen} == {org_a}
    assert {kind for _, kind in seen} & {str(t) for t in FOR_OPERATORS} == set()
    assert failed.event_id in {e.event_id for _, e in await kernel.events.events(org_id=org_a)}


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
                    event="tokens",
                    quantity=1,
                    occurred_at=clock.now,
                    received_at=clock.now,
                )
            )


async def test_service_calls_for_a_user_run_confined_to_their_orgs(
    pg_database: Database, clock: Clock
) -> None:
    org_a, org_b, user_a, _ = await two_orgs(pg_database, clock)
    as_user_a = make_kernel(pg_database, clock).for_user(user_a)
    assert (await as_user_a.summary.summary(org_a)).org_id == org_a
    with pytest.raises(OrgNotFound):  # the rows of org B are invisible, not merely refused
        await as_user_a.summary.period_usage(org_b)
    with pytest.raises(OrgNotFound):
        await as_user_a.quota.check(org_b, "tokens", 1)


async def test_a_user_seeds_and_changes_only_their_own_orgs_state(
    pg_database: Database, clock: Clock
) -> None:
    org_id, user_id = new_id(), new_id("user")
    kernel = make_kernel(pg_database, clock)
    async with pg_database.transaction() as conn:  # an org that has no billing state yet
        await OrgRepository(UnitOfWork(conn)).ensure_orgs([org_id], clock(), OrgOrigin.API)
    await kernel.members.add(org_id, user_id, MemberRole.OWNER)
    as_user = kernel.for_user(user_id)
    assert (await as_user.subscriptions.billing_state(org_id)).status.value == "trial"
    assert (await as_user.subscriptions.set_plan(org_id, "growth")).plan_slug == "growth"
    other = new_id()
    await kernel.orgs.create(other)
    with pytest.raises(OrgNotFound):
        await as_user.subscriptions.set_plan(other, "growth")
    assert (await kernel.subscriptions.billing_state(other)).plan_slug == "internal-dev"


async def test_reads_skip_the_transaction_only_for_the_kernels_own_role(
    pg_database: Database, clock: Clock
) -> None:
    org_a, _, user_a, _ = await two_orgs(pg_database, clock)
    xid = text("SELECT pg_current_xact_id()::text")
    async with pg_database.read() as conn:  # autocommit: each statement is its own transaction
        assert (await conn.execute(xid)).scalar_one() != (await conn.execute(xid)).scalar_one()
        assert (await conn.execute(text("SELECT current_user"))).scalar_one() == "postgres"
    async with pg_database.read(acting_user=user_a) as conn:  # confined: one transaction
        assert (await conn.execute(xid)).scalar_one() == (await conn.execute(xid)).scalar_one()
        assert (await conn.execute(text("SELECT current_user"))).scalar_one() == "billing_user"
        assert set((await conn.execute(select(usage_events.c.org_id))).scalars()) == {org_a}
