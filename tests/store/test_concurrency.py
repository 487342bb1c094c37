"""Counts stay exact when many connections write at once (both databases; PostgreSQL is the
one with real parallelism)."""

import asyncio

import pytest
from sqlalchemy import func, select

from billing_kernel.db.database import Database
from billing_kernel.db.tables import org_billing_state, orgs, usage_events
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.repository import OrgRepository
from billing_kernel.orgs.rules import OrgOrigin
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import Clock, new_id, save_plan

pytestmark = pytest.mark.anyio


async def count_rows(database: Database, table: object, org_id: str) -> int:
    async with database.transaction() as conn:
        query = select(func.count()).select_from(table).where(table.c.org_id == org_id)  # type: ignore[attr-defined]
        return int((await conn.execute(query)).scalar_one())


async def test_200_concurrent_records_sum_exactly(kernel: Kernel, database: Database) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id)
    quantities = [1 + (n * 7919) % 10_000 for n in range(200)]
    results = await asyncio.gather(
        *(
            kernel.usage.record(org_id, "tokens", q, idempotency_key=f"k{n}")
            for n, q in enumerate(quantities)
        )
    )
    assert all(r.status is RecordStatus.ACCEPTED for r in results)
    usage = await kernel.summary.period_usage(org_id)
    assert usage.used["tokens"] == sum(quantities)
    assert await count_rows(database, usage_events, org_id) == 200


async def test_concurrent_senders_of_one_key_count_it_once(
    kernel: Kernel, database: Database
) -> None:
    org_id = new_id()
    results = await asyncio.gather(
        *(
            kernel.usage.record(org_id, "tokens", 250, idempotency_key="the-same-key")
            for _ in range(50)
        )
    )
    statuses = [r.status for r in results]
    assert statuses.count(RecordStatus.ACCEPTED) == 1
    assert statuses.count(RecordStatus.DUPLICATE) == 49
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 250


async def test_concurrent_first_touch_of_an_org_seeds_exactly_one_state(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    async with database.transaction() as conn:
        await OrgRepository(UnitOfWork(conn)).ensure_orgs([org_id], clock(), OrgOrigin.API)
    states = await asyncio.gather(*(kernel.subscriptions.billing_state(org_id) for _ in range(50)))
    assert len(set(states)) == 1
    assert await count_rows(database, org_billing_state, org_id) == 1


async def test_concurrent_first_events_of_a_new_org_create_it_once(
    kernel: Kernel, database: Database
) -> None:
    org_id = new_id()
    await asyncio.gather(
        *(
            kernel.usage.record(org_id, "playbook_runs", 1, idempotency_key=f"run-{n}")
            for n in range(50)
        )
    )
    assert (await kernel.summary.period_usage(org_id)).used["playbook_runs"] == 50
    assert await count_rows(database, orgs, org_id) == 1
    assert await count_rows(database, org_billing_state, org_id) == 1


async def test_200_concurrent_writers_cross_each_threshold_exactly_once(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """Single events, batches, consumes and reservations' commits, all at once, take an
    org from nothing to 600 of its 500 tokens: 80 % and 100 % are each crossed once, by
    the write that reached them."""
    plan = await save_plan(database, clock())
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan.slug)

    async def writer(n: int) -> None:  # each adds 3 tokens
        key = f"w{n}"
        match n % 4:
            case 0:
                await kernel.usage.record(org_id, "tokens", 3, idempotency_key=key)
            case 1:
                await kernel.usage.record_batch(
                    [
                        UsageReport(org_id, "tokens", 1, f"{key}a"),
                        UsageReport(org_id, "tokens", 2, f"{key}b"),
                    ]
                )
            case 2:
                assert (
                    await kernel.quota.consume(org_id, "tokens", 3, idempotency_key=key)
                ).decision.allowed
            case _:
                made = await kernel.quota.reserve(org_id, "tokens", 1, idempotency_key=key)
                await kernel.reservations.commit(made.reservation.reservation_id, 3)

    await asyncio.gather(*(writer(n) for n in range(200)))
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 600
    events = [event for _, event in reversed(await kernel.events.events(org_id=org_id))]
    assert [(str(e.event_type), e.data["threshold"]["key"]) for e in events] == [  # type: ignore[index]
        ("usage.threshold_crossed", "80%"),
        ("usage.threshold_crossed", "100%"),
    ]
    assert 400 <= int(events[0].data["used"]) <= 402  # type: ignore[call-overload]
    assert 500 <= int(events[1].data["used"]) <= 502  # type: ignore[call-overload]
