"""Several services writing through one unit of work, and counters that return their totals."""

from __future__ import annotations

import asyncio

import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database, notify
from billing_kernel.db.unit_of_work import Transactions
from billing_kernel.errors import OrgNotFound, PlanNotFound
from billing_kernel.kernel import Kernel
from billing_kernel.usage.rules import UsageReport
from tests.conftest import Clock, new_id

pytestmark = pytest.mark.anyio


async def test_writes_of_several_services_in_one_unit_roll_back_together(kernel: Kernel) -> None:
    org_id = new_id()

    async def org_usage_and_plan(plan_slug: str) -> None:
        async with kernel.transaction() as uow:
            await kernel.orgs.create(org_id, uow=uow)
            await kernel.usage.record(org_id, "tokens", 5, idempotency_key="k", uow=uow)
            await kernel.subscriptions.set_plan(org_id, plan_slug, uow=uow)

    with pytest.raises(PlanNotFound):
        await org_usage_and_plan("no-such-plan")
    with pytest.raises(OrgNotFound):  # neither the org nor its usage was kept
        await kernel.summary.period_usage(org_id)
    await org_usage_and_plan("growth")
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 5
    assert (await kernel.subscriptions.billing_state(org_id)).plan_slug == "growth"


async def test_a_batch_returns_the_new_total_of_each_counter_it_added_to(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.usage.record(org_id, "tokens", 10, idempotency_key="first")
    result = await kernel.usage.record_batch(
        [
            UsageReport(org_id, "tokens", 5, "a"),
            UsageReport(org_id, "tokens", 7, "b"),
            UsageReport(org_id, "playbook_runs", 1, "c"),
            UsageReport(org_id, "tokens", 5, "a"),  # a duplicate adds nothing
            UsageReport(org_id, "tokens", 99, "first"),  # a conflict adds nothing
        ]
    )
    period = BillingPeriod.containing(clock()).key
    assert result.totals == {(org_id, period, "tokens"): 22, (org_id, period, "playbook_runs"): 1}
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 22
    replay = await kernel.usage.record_batch([UsageReport(org_id, "tokens", 5, "a")])
    assert replay.totals == {}  # nothing was added


async def test_a_seat_peak_returns_the_peak_after_the_change(kernel: Kernel, clock: Clock) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id)
    async with kernel.transaction() as uow:
        assert await kernel.usage.record_seats(org_id, 2, 3, clock(), uow) == {"seats": 3}
        assert await kernel.usage.record_seats(org_id, 3, 2, clock(), uow) == {"seats": 3}
        assert await kernel.usage.record_seats(org_id, 2, 4, clock(), uow) == {"seats": 4}
        # A removal from five: the five held their seats this month.
        assert await kernel.usage.record_seats(org_id, 5, 4, clock(), uow) == {"seats": 5}


async def test_a_read_only_unit_refuses_to_be_written_through(database: Database) -> None:
    transactions = Transactions(database)
    async with transactions.read() as reading:
        writing = transactions.begin(reading)
        with pytest.raises(RuntimeError, match="read-only"):
            await writing.__aenter__()


async def test_a_listener_hears_a_notification_when_its_transaction_commits_only(
    database: Database,
) -> None:
    """What wakes the delivery worker: heard on commit (not before it), never on a
    rollback. Each commit is heard once in process and, on PostgreSQL, once more through
    LISTEN, which comes when it comes: the test counts what it heard and waits for the
    count it expects, and proves a silence by a later commit heard in order after it."""
    calls: list[None] = []
    arrived = asyncio.Event()
    per_commit = 2 if database.is_postgresql else 1

    def on_notify() -> None:
        calls.append(None)
        arrived.set()

    async def heard(count: int) -> None:
        while len(calls) < count:
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 5)

    async def committed_notify() -> None:
        async with database.transaction() as other:
            await notify(other, "test_channel")

    async with database.listen("test_channel", on_notify):
        async with database.transaction() as conn:
            await notify(conn, "test_channel")
            if database.is_postgresql:  # another commit meanwhile is heard; this one is not
                await committed_notify()
                await heard(per_commit)
            assert len(calls) == (per_commit if database.is_postgresql else 0)
            expected = len(calls) + per_commit  # once this commits
        await heard(expected)
        with pytest.raises(RuntimeError):
            await notify_then_fail(database)
        await committed_notify()  # heard after anything the rollback could have sent
        await heard(expected + per_commit)
        assert len(calls) == expected + per_commit
    async with database.transaction() as conn:  # no longer listening
        await notify(conn, "test_channel")
    assert len(calls) == expected + per_commit


async def notify_then_fail(database: Database) -> None:
    async with database.transaction() as conn:
        await notify(conn, "test_channel")
        raise RuntimeError("rolled back")


async def test_another_process_hears_a_commit_through_postgresql(pg_database: Database) -> None:
    """Another pool (as another process has) hears it by LISTEN/NOTIFY."""
    elsewhere = Database(str(pg_database.url))
    heard = asyncio.Event()
    try:
        async with elsewhere.listen("test_channel", heard.set):
            async with pg_database.transaction() as conn:
                await notify(conn, "test_channel")
            await asyncio.wait_for(heard.wait(), 5)
    finally:
        await elsewhere.dispose()
