"""Atomic check-and-consume through the service, on both databases: a decision and the
usage it allows in one step, exact under concurrency, idempotent by key."""

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import quota_decisions, usage_events
from billing_kernel.errors import IdempotencyConflict, InvalidInput, OrgNotFound
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride, Reason
from billing_kernel.usage.rules import RecordStatus
from tests.conftest import Clock, make_kernel, new_id, row_counts

pytestmark = pytest.mark.anyio

HOUR = timedelta(hours=1)


async def org_with_limit(
    kernel: Kernel,
    limit: int,
    mode: Enforcement = Enforcement.HARD,
    grace_percent: int | None = None,
    grace_period: timedelta | None = None,
) -> str:
    """A new org called Acme on Starter, with its own tokens limit and policy."""
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug="starter")
    override = LimitOverride(
        included_quantity=limit,
        sets_included=True,
        mode=mode,
        grace_percent=grace_percent,
        grace_period=grace_period,
        sets_grace_period=grace_period is not None,
    )
    await kernel.quota.set_override(org_id, "tokens", override)
    return org_id


async def tokens_used(kernel: Kernel, org_id: str, clock: Clock) -> int:
    counters = await kernel.usage_reader.counters(org_id, BillingPeriod.containing(clock()))
    return counters.get("tokens", 0)


async def rows_of(database: Database, table: object, org_id: str) -> int:
    async with database.transaction() as conn:
        query = select(func.count()).select_from(table).where(table.c.org_id == org_id)  # type: ignore[attr-defined]
        return int((await conn.execute(query)).scalar_one())


async def test_an_allowed_consume_records_the_usage_as_an_event(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    consumed = await kernel.quota.consume(org_id, "tokens", 60, idempotency_key="run-1")
    d = consumed.decision
    assert (d.allowed, d.reason, d.used, d.remaining, consumed.replayed) == (
        True,
        Reason.WITHIN_LIMIT,
        0,
        100,
        False,
    )
    assert await tokens_used(kernel, org_id, clock) == 60
    assert await rows_of(database, usage_events, org_id) == 1
    check = await kernel.quota.check(org_id, "tokens", 40)  # sees the consume at once
    assert (check.used, check.allowed) == (60, True)


async def test_a_refused_consume_records_nothing_and_says_why(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    await kernel.quota.consume(org_id, "tokens", 95, idempotency_key="a")
    refused = (await kernel.quota.consume(org_id, "tokens", 10, idempotency_key="b")).decision
    assert (refused.allowed, refused.reason, refused.used, refused.remaining) == (
        False,
        Reason.LIMIT_REACHED,
        95,
        5,
    )
    assert refused.message == (
        "Acme has 5 tokens left in Starter this month, fewer than the 10 asked for. "
        "Usage resets on 1 June. Growth includes 5,000,000 tokens."
    )
    assert refused.upgrade is not None
    assert refused.upgrade.slug == "growth"
    assert await tokens_used(kernel, org_id, clock) == 95
    assert await rows_of(database, usage_events, org_id) == 1
    last = (await kernel.quota.consume(org_id, "tokens", 5, idempotency_key="c")).decision
    assert (last.allowed, await tokens_used(kernel, org_id, clock)) == (True, 100)


@pytest.mark.parametrize(("left", "consumers"), [(1, 60), (37, 120)])
async def test_of_concurrent_consumes_exactly_as_many_as_are_left_are_allowed(
    kernel: Kernel, database: Database, clock: Clock, left: int, consumers: int
) -> None:
    org_id = await org_with_limit(kernel, 1_000)
    await kernel.usage.record(org_id, "tokens", 1_000 - left, idempotency_key="before")
    answers = await asyncio.gather(
        *(
            kernel.quota.consume(org_id, "tokens", 1, idempotency_key=f"c-{n}")
            for n in range(consumers)
        )
    )
    allowed = [a for a in answers if a.decision.allowed]
    assert len(allowed) == left
    assert await tokens_used(kernel, org_id, clock) == 1_000
    assert await rows_of(database, usage_events, org_id) == 1 + left
    assert await rows_of(database, quota_decisions, org_id) == consumers
    refused = {a.decision.reason for a in answers if not a.decision.allowed}
    assert refused == {Reason.LIMIT_REACHED}


async def test_a_retried_consume_counts_once_and_answers_the_first_decision(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    first = await kernel.quota.consume(org_id, "tokens", 30, idempotency_key="run-7")
    await kernel.usage.record(org_id, "tokens", 50, idempotency_key="meanwhile")
    clock.advance(hours=1)
    retry = await kernel.quota.consume(org_id, "tokens", 30, idempotency_key="run-7")
    assert retry.replayed
    assert retry.decision == first.decision  # used 0, as first answered
    assert await tokens_used(kernel, org_id, clock) == 80


async def test_a_retried_refusal_is_refused_again_even_once_it_would_fit(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 10)
    first = await kernel.quota.consume(org_id, "tokens", 11, idempotency_key="big")
    assert not first.decision.allowed
    await kernel.quota.set_override(org_id, "tokens", 1_000)
    retry = await kernel.quota.consume(org_id, "tokens", 11, idempotency_key="big")
    assert (retry.replayed, retry.decision.allowed) == (True, False)
    assert retry.decision.message == first.decision.message
    assert retry.decision.upgrade == first.decision.upgrade
    assert await tokens_used(kernel, org_id, clock) == 0


async def test_concurrent_consumes_with_one_key_count_once_and_answer_alike(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    answers = await asyncio.gather(
        *(kernel.quota.consume(org_id, "tokens", 7, idempotency_key="same") for _ in range(30))
    )
    assert {a.decision for a in answers} == {answers[0].decision}
    assert sum(not a.replayed for a in answers) == 1
    assert await tokens_used(kernel, org_id, clock) == 7
    assert await rows_of(database, usage_events, org_id) == 1


async def test_a_key_reused_for_another_amount_or_by_a_usage_event_conflicts(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    await kernel.quota.consume(org_id, "tokens", 5, idempotency_key="k1")
    await kernel.usage.record(org_id, "tokens", 5, idempotency_key="event-key")
    before = await row_counts(database)
    with pytest.raises(IdempotencyConflict, match="consume 5 tokens"):
        await kernel.quota.consume(org_id, "tokens", 6, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict, match="already used"):
        await kernel.quota.consume(org_id, "tokens", 5, idempotency_key="event-key")
    assert await row_counts(database) == before


async def test_a_first_consume_larger_than_the_whole_limit_writes_no_counter(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """No counter row yet: an insert is not judged by the upsert's condition, so a consume
    that could never fit must be refused before any counter is made."""
    org_id = await org_with_limit(kernel, 100)
    refused = (await kernel.quota.consume(org_id, "tokens", 101, idempotency_key="a")).decision
    assert (refused.allowed, refused.used, refused.remaining) == (False, 0, 100)
    assert await tokens_used(kernel, org_id, clock) == 0
    assert await rows_of(database, usage_events, org_id) == 0
    fits = (await kernel.quota.consume(org_id, "tokens", 100, idempotency_key="b")).decision
    assert (fits.allowed, await tokens_used(kernel, org_id, clock)) == (True, 100)


async def test_a_key_a_usage_event_used_conflicts_whether_or_not_the_consume_would_fit(
    kernel: Kernel, database: Database
) -> None:
    org_id = await org_with_limit(kernel, 100)
    await kernel.usage.record(org_id, "tokens", 95, idempotency_key="event-key")
    before = await row_counts(database)
    for amount in (5, 10, 1_000):  # fits; over what is left; over the whole limit
        with pytest.raises(IdempotencyConflict, match="already used"):
            await kernel.quota.consume(org_id, "tokens", amount, idempotency_key="event-key")
    assert await row_counts(database) == before


async def test_a_consume_sent_again_as_an_event_with_its_own_time_is_a_duplicate(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """What the SDK sends for a consume it allowed while it could not hear the kernel: the
    consume's key, metric and amount, timed by the SDK. If the consume got through, that is
    the same usage, whose time the kernel chose: a duplicate, counted once."""
    org_id = await org_with_limit(kernel, 100)
    await kernel.quota.consume(org_id, "tokens", 7, idempotency_key="c-1")
    earlier = clock.now - timedelta(seconds=30)
    again = await kernel.usage.record(
        org_id, "tokens", 7, idempotency_key="c-1", occurred_at=earlier
    )
    assert again.status == RecordStatus.DUPLICATE
    with pytest.raises(IdempotencyConflict):  # other usage under the key is still a conflict
        await kernel.usage.record(org_id, "tokens", 8, idempotency_key="c-1", occurred_at=earlier)
    assert await tokens_used(kernel, org_id, clock) == 7
    assert await rows_of(database, usage_events, org_id) == 1


async def test_bad_consumes_are_refused_before_anything_is_written(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100)
    before = await row_counts(database)
    with pytest.raises(InvalidInput, match="seats"):
        await kernel.quota.consume(org_id, "seats", 1, idempotency_key="s")
    with pytest.raises(InvalidInput, match="idempotency_key"):
        await kernel.quota.consume(org_id, "tokens", 1, idempotency_key=" padded ")
    with pytest.raises(InvalidInput, match="quantity"):
        await kernel.quota.consume(org_id, "tokens", -1, idempotency_key="neg")
    await kernel.subscriptions.set_status(org_id, BillingStatus.CANCELED)
    with pytest.raises(InvalidInput, match="seats"):  # judged before any decision
        await kernel.quota.consume(org_id, "seats", 1, idempotency_key="s")
    before = await row_counts(database)
    strict = make_kernel(database, clock, auto_create_orgs=False)
    with pytest.raises(OrgNotFound):
        await strict.quota.consume(new_id(), "tokens", 1, idempotency_key="x")
    assert await row_counts(database) == before


async def test_a_consume_for_a_new_org_creates_it_as_a_usage_event_would(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    consumed = await kernel.quota.consume(org_id, "tokens", 3, idempotency_key="first")
    assert consumed.decision.allowed
    assert (await kernel.subscriptions.billing_state(org_id)).status is BillingStatus.TRIAL
    assert await tokens_used(kernel, org_id, clock) == 3


async def test_soft_limits_consume_beyond_the_limit_and_canceled_orgs_consume_nothing(
    kernel: Kernel, clock: Clock
) -> None:
    soft = await org_with_limit(kernel, 10, mode=Enforcement.SOFT)
    over = (await kernel.quota.consume(soft, "tokens", 25, idempotency_key="o")).decision
    assert (over.allowed, over.reason) == (True, Reason.SOFT_LIMIT_EXCEEDED)
    assert await tokens_used(kernel, soft, clock) == 25
    canceled = await org_with_limit(kernel, 1_000)
    await kernel.subscriptions.set_status(canceled, BillingStatus.CANCELED)
    refused = (await kernel.quota.consume(canceled, "tokens", 1, idempotency_key="c")).decision
    assert (refused.allowed, refused.reason) == (False, Reason.CANCELED)
    assert await tokens_used(kernel, canceled, clock) == 0


async def test_consumes_use_the_percent_grace_and_no_more(kernel: Kernel, clock: Clock) -> None:
    org_id = await org_with_limit(kernel, 100, grace_percent=10)
    answers = [
        (await kernel.quota.consume(org_id, "tokens", 4, idempotency_key=f"g{n}")).decision
        for n in range(30)
    ]
    assert [a.reason for a in answers[:25]] == [Reason.WITHIN_LIMIT] * 25
    assert [a.reason for a in answers[25:27]] == [Reason.IN_GRACE] * 2  # 104, 108
    assert [a.reason for a in answers[27:]] == [Reason.LIMIT_REACHED] * 3
    assert await tokens_used(kernel, org_id, clock) == 108


async def test_a_consume_that_crosses_the_limit_starts_its_time_grace(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await org_with_limit(kernel, 100, grace_period=72 * HOUR)
    crossing = (await kernel.quota.consume(org_id, "tokens", 150, idempotency_key="x")).decision
    assert (crossing.allowed, crossing.reason) == (True, Reason.IN_GRACE)
    assert crossing.grace_ends_at == clock() + 72 * HOUR
    clock.advance(hours=71)
    late = (await kernel.quota.consume(org_id, "tokens", 1_000, idempotency_key="y")).decision
    assert (late.allowed, late.grace_ends_at) == (True, crossing.grace_ends_at)
    clock.advance(hours=1)
    ended = (await kernel.quota.consume(org_id, "tokens", 1, idempotency_key="z")).decision
    assert (ended.allowed, ended.reason) == (False, Reason.LIMIT_REACHED)
    assert await tokens_used(kernel, org_id, clock) == 1_150


async def test_decisions_past_their_retention_are_forgotten_but_a_held_reservations(
    own_database: Database, clock: Clock
) -> None:
    """A database of the test's own: forgetting reaches every org's decisions."""
    kernel, start = make_kernel(own_database, clock), clock()
    org_id = await org_with_limit(kernel, 100)
    for key in ("a", "b"):
        await kernel.quota.consume(org_id, "tokens", 5, idempotency_key=key)
    await kernel.quota.reserve(org_id, "tokens", 10, idempotency_key="held")
    done = await kernel.quota.reserve(org_id, "tokens", 10, idempotency_key="done")
    await kernel.reservations.commit(done.reservation.reservation_id, 7)
    clock.advance(days=20)
    await kernel.quota.consume(org_id, "tokens", 1, idempotency_key="recent")
    assert await rows_of(own_database, quota_decisions, org_id) == 5
    clock.advance(days=11)  # the first four are 31 days old, the last 11
    assert await kernel.quota.prune_decisions(timedelta(days=30), batch=1) == 3
    assert await rows_of(own_database, quota_decisions, org_id) == 2  # "held" and "recent"
    assert await kernel.quota.prune_decisions(timedelta(days=30)) == 0
    with pytest.raises(IdempotencyConflict):  # its key now names only the event it recorded
        await kernel.quota.consume(org_id, "tokens", 5, idempotency_key="a")
    assert await tokens_used(kernel, org_id, Clock(start)) == 17  # a, b and the commit, once
