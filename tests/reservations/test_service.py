"""Reservations through the service, on both databases: units held atomically against a
limit, committed as the usage they turned out to be, released, or given back when their
TTL ends; exact under concurrency, idempotent by key."""

import asyncio
import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import usage_counters, usage_events, usage_reservations
from billing_kernel.errors import (
    IdempotencyConflict,
    InvalidInput,
    ReservationNotFound,
    ReservationSettled,
)
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.quota.rules import Reason
from billing_kernel.reservations.rules import ReservationStatus
from billing_kernel.usage.rules import RecordStatus
from tests.conftest import Clock, row_counts
from tests.quota.test_consume import org_with_limit, rows_of

pytestmark = pytest.mark.anyio


async def counter(database: Database, org_id: str, clock: Clock) -> tuple[int, int]:
    """The org's tokens counter this period: (usage, held)."""
    c = usage_counters.c
    async with database.transaction() as conn:
        found = (
            await conn.execute(
                select(c.quantity, c.reserved).where(
                    c.org_id == org_id,
                    c.metric == "tokens",
                    c.period_start == BillingPeriod.containing(clock()).key,
                )
            )
        ).first()
    return (0, 0) if found is None else (found.quantity, found.reserved)


async def stored_status(database: Database, reservation_id: str) -> str:
    r = usage_reservations.c
    async with database.transaction() as conn:
        status: str = (
            await conn.execute(select(r.status).where(r.reservation_id == reservation_id))
        ).scalar_one()
    return status


async def test_held_units_count_against_every_other_decision(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = await kernel.quota.reserve(org_id, "tokens", 70, idempotency_key="llm-1")
    r, d = made.reservation, made.decision
    assert (r.status, r.estimate, r.expires_at) == (
        ReservationStatus.HELD,
        70,
        clock() + (r.expires_at - r.reserved_at),
    )
    assert (r.expires_at - r.reserved_at).total_seconds() == 900  # the default TTL
    assert (d.allowed, d.reason, d.used, d.held, d.remaining) == (
        True,
        Reason.WITHIN_LIMIT,
        0,
        0,
        100,
    )
    assert await counter(database, org_id, clock) == (0, 70)
    check = await kernel.quota.check(org_id, "tokens", 31)
    assert (check.allowed, check.used, check.held, check.remaining) == (False, 0, 70, 30)
    assert check.message == (
        "Acme has 30 tokens left in Starter this month, fewer than the 31 asked for. "
        "Work in progress holds 70 more. Usage resets on 1 June. "
        "Growth includes 5,000,000 tokens."
    )
    refused = await kernel.quota.consume(org_id, "tokens", 31, idempotency_key="c-1")
    assert (refused.decision.allowed, refused.decision.held) == (False, 70)
    second = await kernel.quota.reserve(org_id, "tokens", 31, idempotency_key="llm-2")
    assert second.reservation.status is ReservationStatus.REFUSED
    assert second.decision.reason is Reason.LIMIT_REACHED
    assert await stored_status(database, second.reservation.reservation_id) == "refused"
    assert (
        await kernel.quota.consume(org_id, "tokens", 30, idempotency_key="c-2")
    ).decision.allowed
    assert await counter(database, org_id, clock) == (30, 70)


async def test_a_commit_records_the_actual_usage_and_gives_back_the_hold(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = (await kernel.quota.reserve(org_id, "tokens", 40, idempotency_key="llm-1")).reservation
    clock.advance(seconds=30)
    committed = await kernel.reservations.commit(made.reservation_id, 55)  # more than held
    assert (committed.status, committed.committed_quantity, committed.settled_at) == (
        ReservationStatus.COMMITTED,
        55,
        clock(),
    )
    assert await counter(database, org_id, clock) == (55, 0)
    e = usage_events.c
    async with database.transaction() as conn:
        event = (
            await conn.execute(
                select(e.idempotency_key, e.quantity, e.occurred_at).where(e.org_id == org_id)
            )
        ).one()
    assert tuple(event) == ("llm-1", 55, made.reserved_at)
    assert await kernel.reservations.get(made.reservation_id) == committed


async def test_a_commit_retried_counts_once(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = (await kernel.quota.reserve(org_id, "tokens", 40, idempotency_key="llm-1")).reservation
    answers = await asyncio.gather(
        *(kernel.reservations.commit(made.reservation_id, 25) for _ in range(20))
    )
    assert {a.committed_quantity for a in answers} == {25}
    again = await kernel.reservations.commit(made.reservation_id, 25)
    assert again.status is ReservationStatus.COMMITTED
    assert await counter(database, org_id, clock) == (25, 0)
    assert await rows_of(database, usage_events, org_id) == 1
    before = await row_counts(database)
    with pytest.raises(IdempotencyConflict, match="already committed with 25"):
        await kernel.reservations.commit(made.reservation_id, 26)
    with pytest.raises(ReservationSettled, match="was committed"):
        await kernel.reservations.release(made.reservation_id)
    assert await row_counts(database) == before
    # The SDK's own record of the commit (it could not hear the answer): the same usage.
    sent = await kernel.usage.record(
        org_id, "tokens", 25, idempotency_key="llm-1", occurred_at=clock.now - timedelta(seconds=5)
    )
    assert sent.status == RecordStatus.DUPLICATE
    assert await row_counts(database) == before


async def test_a_release_gives_the_hold_back_once(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = (await kernel.quota.reserve(org_id, "tokens", 60, idempotency_key="llm-1")).reservation
    released = await kernel.reservations.release(made.reservation_id)
    assert released.status is ReservationStatus.RELEASED
    assert await kernel.reservations.release(made.reservation_id) == released
    assert await counter(database, org_id, clock) == (0, 0)
    with pytest.raises(ReservationSettled, match="was released and holds nothing"):
        await kernel.reservations.commit(made.reservation_id, 10)
    assert (await kernel.quota.check(org_id, "tokens", 100)).allowed


async def test_an_expired_hold_comes_back_without_any_request_touching_it(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = await kernel.quota.reserve(org_id, "tokens", 80, idempotency_key="llm-1", ttl_seconds=60)
    rid = made.reservation.reservation_id
    clock.advance(seconds=59)
    assert (await kernel.quota.check(org_id, "tokens", 21)).allowed is False
    clock.advance(seconds=1)  # its TTL ends: nothing has run since
    check = await kernel.quota.check(org_id, "tokens", 100)
    assert (check.allowed, check.held, check.remaining) == (True, 0, 100)
    seen = await kernel.reservations.get(rid)
    assert seen.status_at(clock()) is ReservationStatus.EXPIRED
    assert await stored_status(database, rid) == "held"  # a check writes nothing
    # the next decision that writes gives the units back, then takes what it asked for
    consumed = await kernel.quota.consume(org_id, "tokens", 100, idempotency_key="c-1")
    assert (consumed.decision.allowed, consumed.decision.held) == (True, 0)
    assert await stored_status(database, rid) == "expired"
    assert await counter(database, org_id, clock) == (100, 0)
    # the work it was made for still happened: its usage is recorded, never lost
    committed = await kernel.reservations.commit(rid, 30)
    assert committed.status is ReservationStatus.COMMITTED
    assert await counter(database, org_id, clock) == (130, 0)


async def test_a_commit_past_the_ttl_gives_back_a_hold_not_yet_given_back(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = await kernel.quota.reserve(org_id, "tokens", 80, idempotency_key="llm-1", ttl_seconds=5)
    clock.advance(minutes=10)
    await kernel.reservations.commit(made.reservation.reservation_id, 70)
    assert await counter(database, org_id, clock) == (70, 0)


@pytest.mark.parametrize(("left", "estimate", "callers"), [(100, 10, 40), (37, 1, 120)])
async def test_concurrent_reservations_never_hold_more_than_is_left(
    kernel: Kernel, database: Database, clock: Clock, left: int, estimate: int, callers: int
) -> None:
    org_id = await org_with_limit(kernel, 1_000)
    await kernel.usage.record(org_id, "tokens", 1_000 - left, idempotency_key="before")
    answers = await asyncio.gather(
        *(
            kernel.quota.reserve(org_id, "tokens", estimate, idempotency_key=f"r-{n}")
            for n in range(callers)
        )
    )
    held = [a for a in answers if a.reservation.status is ReservationStatus.HELD]
    assert len(held) == left // estimate
    assert all(a.decision.allowed for a in held)
    assert await counter(database, org_id, clock) == (1_000 - left, left // estimate * estimate)


async def test_mixed_consumes_reservations_commits_and_releases_sum_exactly(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """Concurrent callers against 500 units: each consumes, or reserves and then commits
    at most its estimate or releases. Usage ends exactly at what was allowed and committed,
    nothing stays held, and the limit is never passed."""
    org_id = await org_with_limit(kernel, 500)
    rng = random.Random(20261125)
    plans = [(rng.choice(["consume", "commit", "release"]), rng.randint(1, 40)) for _ in range(80)]

    async def caller(n: int, action: str, units: int) -> tuple[int, int]:
        """What the caller got counted, and the usage events that recorded it."""
        if action == "consume":
            answer = await kernel.quota.consume(org_id, "tokens", units, idempotency_key=f"m-{n}")
            return (units, 1) if answer.decision.allowed else (0, 0)
        made = await kernel.quota.reserve(org_id, "tokens", units, idempotency_key=f"m-{n}")
        if made.reservation.status is not ReservationStatus.HELD:
            return 0, 0
        await asyncio.sleep(0)
        if action == "release":
            await kernel.reservations.release(made.reservation.reservation_id)
            return 0, 0
        actual = rng.randint(0, units)
        await kernel.reservations.commit(made.reservation.reservation_id, actual)
        return actual, 1

    results = await asyncio.gather(*(caller(n, a, u) for n, (a, u) in enumerate(plans)))
    used, held = await counter(database, org_id, clock)
    assert (used, held) == (sum(units for units, _ in results), 0)
    assert used <= 500
    assert await rows_of(database, usage_events, org_id) == sum(events for _, events in results)


async def test_a_reservation_retried_answers_the_first_and_holds_once(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    answers = await asyncio.gather(
        *(kernel.quota.reserve(org_id, "tokens", 30, idempotency_key="same") for _ in range(20))
    )
    assert len({a.reservation.reservation_id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    assert {a.decision for a in answers} == {answers[0].decision}
    assert await counter(database, org_id, clock) == (0, 30)
    first = answers[0].reservation
    await kernel.reservations.commit(first.reservation_id, 12)
    later = await kernel.quota.reserve(org_id, "tokens", 30, idempotency_key="same")
    assert later.replayed
    assert later.reservation.status is ReservationStatus.COMMITTED
    assert await counter(database, org_id, clock) == (12, 0)


async def test_keys_are_shared_with_consumes_and_usage_events(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    await kernel.quota.reserve(org_id, "tokens", 5, idempotency_key="r-1")
    await kernel.quota.consume(org_id, "tokens", 5, idempotency_key="c-1")
    await kernel.quota.consume(org_id, "tokens", 500, idempotency_key="c-refused")
    await kernel.usage.record(org_id, "tokens", 5, idempotency_key="e-1")
    before = await row_counts(database)
    with pytest.raises(IdempotencyConflict, match="reserve 5 tokens"):
        await kernel.quota.reserve(org_id, "tokens", 6, idempotency_key="r-1")
    with pytest.raises(IdempotencyConflict, match="reserve 5 tokens"):
        await kernel.quota.consume(org_id, "tokens", 5, idempotency_key="r-1")
    with pytest.raises(IdempotencyConflict, match="consume 5 tokens"):
        await kernel.quota.reserve(org_id, "tokens", 5, idempotency_key="c-1")
    with pytest.raises(IdempotencyConflict, match="consume 500 tokens"):
        await kernel.quota.reserve(org_id, "tokens", 500, idempotency_key="c-refused")
    with pytest.raises(IdempotencyConflict, match="already used"):
        await kernel.quota.reserve(org_id, "tokens", 5, idempotency_key="e-1")
    assert await row_counts(database) == before


async def test_bad_reservations_are_refused_before_anything_is_written(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    made = (await kernel.quota.reserve(org_id, "tokens", 5, idempotency_key="ok")).reservation
    before = await row_counts(database)
    with pytest.raises(InvalidInput, match="seats"):
        await kernel.quota.reserve(org_id, "seats", 1, idempotency_key="s")
    with pytest.raises(InvalidInput, match="org_id"):
        await kernel.quota.reserve(" padded", "tokens", 1, idempotency_key="p")
    with pytest.raises(InvalidInput, match="ttl_seconds"):
        await kernel.quota.reserve(org_id, "tokens", 1, idempotency_key="t", ttl_seconds=0)
    with pytest.raises(InvalidInput, match="quantity"):
        await kernel.quota.reserve(org_id, "tokens", -1, idempotency_key="n")
    with pytest.raises(InvalidInput, match="quantity"):
        await kernel.reservations.commit(made.reservation_id, -1)
    with pytest.raises(ReservationNotFound):
        await kernel.reservations.commit("rsv_" + "0" * 32, 1)
    with pytest.raises(ReservationNotFound):  # another org's key cannot see it
        await kernel.reservations.release(made.reservation_id, org_id="someone-else")
    assert await row_counts(database) == before


async def test_a_reservation_for_a_canceled_org_is_kept_refused_and_retried_as_one(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """The billing status refuses before any counter is written; the reservation is kept
    all the same, so its answer and a retry's are a refused reservation, as any other."""
    org_id = await org_with_limit(kernel, 1_000)
    await kernel.subscriptions.set_status(org_id, BillingStatus.CANCELED)
    made = await kernel.quota.reserve(org_id, "tokens", 40, idempotency_key="r-1")
    assert (made.decision.allowed, made.decision.reason) == (False, Reason.CANCELED)
    assert made.reservation.status is ReservationStatus.REFUSED
    assert made.reservation.settled_at == clock.now
    again = await kernel.quota.reserve(org_id, "tokens", 40, idempotency_key="r-1")
    assert again.replayed
    assert again.reservation.reservation_id == made.reservation.reservation_id
    assert await counter(database, org_id, clock) == (0, 0)
    await kernel.usage.record(org_id, "tokens", 1, idempotency_key="event-key")
    with pytest.raises(IdempotencyConflict):
        await kernel.quota.reserve(org_id, "tokens", 40, idempotency_key="event-key")
