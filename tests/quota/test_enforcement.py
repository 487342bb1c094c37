"""Hard limits, grace and the billing status overlay through the services, on both
databases, with the clock in the test's hands."""

from datetime import timedelta

import pytest

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import InvalidInput, MetricNotInPlan, PlanNotFound
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import NOT_INCLUDED, SOFT, Enforcement, Policy
from billing_kernel.quota.rules import LimitOverride, Reason, Terms
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import Clock, make_kernel, new_id, save_plan

pytestmark = pytest.mark.anyio

HOUR = timedelta(hours=1)


async def org_on_hard_plan(kernel: Kernel, database: Database, clock: Clock, policy: Policy) -> str:
    """A new org on a plan of its own that includes 500 tokens, enforced by `policy`."""
    plan = await save_plan(database, clock())
    await kernel.plans.set_policy(plan.slug, "tokens", policy)
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug=plan.slug)
    return org_id


async def use(kernel: Kernel, org_id: str, quantity: int, metric: str = "tokens") -> None:
    await kernel.usage.record(org_id, metric, quantity, idempotency_key=new_id("event"))


async def test_a_hard_limit_with_percent_grace_refuses_beyond_it_and_offers_an_upgrade(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_hard_plan(
        kernel, database, clock, Policy(Enforcement.HARD, grace_percent=10)
    )
    await use(kernel, org_id, 500)
    graced = await kernel.quota.check(org_id, "tokens", 50)
    assert (graced.allowed, graced.reason, graced.remaining) == (True, Reason.IN_GRACE, 50)
    refused = await kernel.quota.check(org_id, "tokens", 51)
    assert (refused.allowed, refused.reason, refused.remaining) == (
        False,
        Reason.LIMIT_REACHED,
        50,
    )
    assert refused.upgrade is not None
    assert refused.upgrade.slug == "starter"
    assert refused.message == (
        "Acme has 50 tokens left in Custom and its grace allowance this month, fewer than the "
        "51 asked for. Usage resets on 1 June. Starter includes 1,000,000 tokens."
    )


async def test_usage_events_are_always_counted_and_the_next_check_sees_them(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_hard_plan(kernel, database, clock, Policy(Enforcement.HARD))
    await use(kernel, org_id, 499)
    assert (await kernel.quota.check(org_id, "tokens")).allowed
    await use(kernel, org_id, 100)  # what already happened: counted beyond the limit
    decision = await kernel.quota.check(org_id, "tokens")
    assert (decision.used, decision.allowed, decision.reason) == (599, False, Reason.LIMIT_REACHED)
    summary = await kernel.summary.summary(org_id)
    assert summary.metric("tokens").used == 599
    assert summary.metric("tokens").policy == Policy(Enforcement.HARD)
    assert summary.enforcement is Enforcement.HARD


async def test_a_time_grace_runs_from_the_write_that_crossed_the_limit(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_hard_plan(
        kernel, database, clock, Policy(Enforcement.HARD, grace_period=72 * HOUR)
    )
    await use(kernel, org_id, 400)
    clock.advance(hours=5)
    await use(kernel, org_id, 101)  # 501: crosses now
    crossed = clock()
    clock.advance(hours=71)
    decision = await kernel.quota.check(org_id, "tokens", 10_000)
    assert (decision.allowed, decision.reason) == (True, Reason.IN_GRACE)
    assert decision.grace_ends_at == crossed + 72 * HOUR
    assert decision.remaining is None
    await use(kernel, org_id, 10)  # later writes do not move the crossing
    clock.advance(hours=1)
    ended = await kernel.quota.check(org_id, "tokens", 1)
    assert (ended.allowed, ended.reason, ended.grace_ends_at) == (
        False,
        Reason.LIMIT_REACHED,
        None,
    )


async def test_a_first_write_already_beyond_the_limit_starts_the_grace(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_hard_plan(
        kernel, database, clock, Policy(Enforcement.HARD, grace_period=HOUR)
    )
    await use(kernel, org_id, 600)  # the counter's first write
    start = clock()
    clock.advance(minutes=59)
    assert (await kernel.quota.check(org_id, "tokens")).grace_ends_at == start + HOUR
    clock.advance(minutes=1)
    assert not (await kernel.quota.check(org_id, "tokens")).allowed


async def test_crossing_a_raised_limit_starts_a_new_grace(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_hard_plan(
        kernel, database, clock, Policy(Enforcement.HARD, grace_period=HOUR)
    )
    await use(kernel, org_id, 501)
    clock.advance(hours=2)
    assert not (await kernel.quota.check(org_id, "tokens")).allowed  # the hour is over
    await kernel.quota.set_override(org_id, "tokens", 1_000)
    assert (await kernel.quota.check(org_id, "tokens")).reason is Reason.WITHIN_LIMIT
    await use(kernel, org_id, 500)  # 1,001: beyond the new limit, a new crossing
    again = await kernel.quota.check(org_id, "tokens")
    assert (again.allowed, again.grace_ends_at) == (True, clock() + HOUR)


async def test_a_limit_lowered_below_usage_starts_the_grace_with_the_next_write(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await org_on_hard_plan(
        kernel, database, clock, Policy(Enforcement.HARD, grace_period=HOUR)
    )
    await use(kernel, org_id, 400)
    await kernel.quota.set_override(org_id, "tokens", 300)
    clock.advance(hours=3)
    await use(kernel, org_id, 1)
    decision = await kernel.quota.check(org_id, "tokens")
    assert (decision.allowed, decision.grace_ends_at) == (True, clock() + HOUR)


async def test_seats_beyond_a_hard_limit_start_its_grace_when_the_member_joins(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    await kernel.quota.set_override(
        org_id,
        "seats",
        LimitOverride(
            included_quantity=2,
            sets_included=True,
            mode=Enforcement.HARD,
            grace_period=HOUR,
            sets_grace_period=True,
        ),
    )
    for n in range(3):
        await kernel.members.add(org_id, new_id(f"user{n}"))
    joined = clock()
    clock.advance(minutes=30)
    decision = await kernel.quota.check(org_id, "seats")
    assert (decision.used, decision.allowed, decision.grace_ends_at) == (3, True, joined + HOUR)
    clock.advance(minutes=30)
    assert (await kernel.quota.check(org_id, "seats", 0)).reason is Reason.LIMIT_REACHED


async def test_past_due_keeps_working_for_its_grace_then_is_refused(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug="starter")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.advance(days=3)
    state = await kernel.subscriptions.set_status(org_id, BillingStatus.PAST_DUE)
    assert state.status_since == clock()
    clock.advance(days=1)
    again = await kernel.subscriptions.subscribe(
        org_id, status=BillingStatus.PAST_DUE
    )  # same since
    assert again.status_since == state.status_since
    decision = await kernel.quota.check(org_id, "tokens")
    assert (decision.allowed, decision.status_blocks_at) == (
        True,
        state.status_since + 7 * 24 * HOUR,
    )
    clock.advance(days=6)
    refused = await kernel.quota.check(org_id, "tokens")
    assert (refused.allowed, refused.reason, refused.remaining) == (False, Reason.PAST_DUE, 0)
    assert refused.upgrade is None
    assert "payment is overdue" in refused.message
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)  # paid: works again at once
    assert (await kernel.quota.check(org_id, "tokens")).allowed


async def test_canceled_refuses_every_metric_at_once_even_unlimited_ones(kernel: Kernel) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="enterprise")
    await kernel.subscriptions.set_status(org_id, BillingStatus.CANCELED)
    for metric in ("tokens", "playbook_runs", "seats"):
        decision = await kernel.quota.check(org_id, metric)
        assert (decision.allowed, decision.reason) == (False, Reason.CANCELED)


async def test_an_ended_trial_blocks_only_where_the_operator_chose_so(
    database: Database, clock: Clock
) -> None:
    lenient = make_kernel(database, clock, trial_days=14)
    strict = make_kernel(database, clock, trial_days=14, ended_trial_blocks=True)
    org_id = new_id()
    await lenient.orgs.create(org_id, plan_slug="starter")
    clock.advance(days=14 + 6)
    assert (await lenient.quota.check(org_id, "tokens")).reason is Reason.WITHIN_LIMIT
    warned = await strict.quota.check(org_id, "tokens")
    assert warned.allowed
    assert warned.status_blocks_at is not None
    clock.advance(days=1)
    assert (await lenient.quota.check(org_id, "tokens")).allowed
    refused = await strict.quota.check(org_id, "tokens")
    assert (refused.allowed, refused.reason) == (False, Reason.TRIAL_ENDED)
    await strict.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    assert (await strict.quota.check(org_id, "tokens")).allowed


async def test_the_past_due_grace_is_a_setting(database: Database, clock: Clock) -> None:
    kernel = make_kernel(database, clock, past_due_grace_days=0)
    org_id = new_id()
    await kernel.orgs.create(org_id)
    await kernel.subscriptions.set_status(org_id, BillingStatus.PAST_DUE)
    assert (await kernel.quota.check(org_id, "tokens")).reason is Reason.PAST_DUE


async def test_an_override_replaces_only_the_parts_it_sets_and_follows_the_plan_otherwise(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    plan = await save_plan(database, clock())
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan.slug)
    terms = await kernel.quota.set_override(org_id, "tokens", LimitOverride(mode=Enforcement.HARD))
    assert terms == Terms(500, Policy(Enforcement.HARD))
    await kernel.plans.set_policy(plan.slug, "tokens", Policy(Enforcement.SOFT, grace_percent=20))
    assert (await kernel.quota.terms(org_id))["tokens"] == Terms(
        500, Policy(Enforcement.HARD, grace_percent=20)
    )  # the plan's later grace, the org's own mode
    await use(kernel, org_id, 600)
    assert (await kernel.quota.check(org_id, "tokens", 0)).allowed  # 600 <= 500 + 20 %
    assert (await kernel.quota.check(org_id, "tokens", 1)).reason is Reason.LIMIT_REACHED
    back = await kernel.quota.clear_override(org_id, "tokens")
    assert back == Terms(500, Policy(Enforcement.SOFT, grace_percent=20))
    assert (await kernel.quota.check(org_id, "tokens", 1)).reason is Reason.SOFT_LIMIT_EXCEEDED
    # The plan does not name playbook runs: it gives none. Reported usage still counts.
    assert (await kernel.quota.terms(org_id))["playbook_runs"] == Terms(0, NOT_INCLUDED)
    await use(kernel, org_id, 3, "playbook_runs")
    none = await kernel.quota.check(org_id, "playbook_runs", 1)
    assert (none.allowed, none.used, none.reason) == (False, 3, Reason.LIMIT_REACHED)
    assert none.message.startswith("Custom does not include runs. ")  # then an upgrade


async def test_policies_and_overrides_are_checked_before_anything_is_written(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    plan = await save_plan(database, clock())
    with pytest.raises(MetricNotInPlan):
        await kernel.plans.set_policy(plan.slug, "seats", Policy(Enforcement.HARD))
    with pytest.raises(PlanNotFound):
        await kernel.plans.set_policy(new_id("plan"), "tokens", Policy(Enforcement.HARD))
    with pytest.raises(InvalidInput):
        await kernel.plans.set_policy(plan.slug, "tokens", Policy(Enforcement.HARD, 1001))
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan.slug)
    with pytest.raises(InvalidInput):
        await kernel.quota.set_override(
            org_id, "tokens", LimitOverride(grace_period=HOUR / 2, sets_grace_period=True)
        )
    assert (await kernel.plans.get(plan.slug)).metrics["tokens"].policy == SOFT
    assert await kernel.quota.overrides(org_id) == {}


async def test_seeded_plans_stay_soft(database: Database) -> None:
    kernel = Kernel(database, Settings(database_url=str(database.url)))
    for slug in ("internal-dev", "starter", "growth", "enterprise"):
        plan = await kernel.plans.get(slug)
        assert [term.policy for term in plan.metrics.values()] == [SOFT] * 3, slug


async def test_one_batch_notes_each_counters_crossing_against_its_own_orgs_limit(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """New and existing counters of several orgs in one statement: each row is judged by
    its own org's limit, never by another row's."""
    timed = Policy(Enforcement.HARD, grace_period=HOUR)
    tight = await org_on_hard_plan(kernel, database, clock, timed)  # 500 tokens
    roomy = await org_on_hard_plan(kernel, database, clock, timed)
    await kernel.quota.set_override(roomy, "tokens", 10_000)
    await use(kernel, roomy, 100)  # an existing counter for one of them
    result = await kernel.usage.record_batch(
        [
            UsageReport(org, "tokens", 600, new_id("event"), None)
            for org in (roomy, tight)  # 700 of 10,000; 600 of 500
        ]
    )
    assert [o.status for o in result.outcomes] == [RecordStatus.ACCEPTED] * 2
    written = clock()
    clock.advance(minutes=30)
    crossed = await kernel.quota.check(tight, "tokens")
    assert (crossed.allowed, crossed.grace_ends_at) == (True, written + HOUR)
    within = await kernel.quota.check(roomy, "tokens", 9_300)
    assert (within.reason, within.grace_ends_at) == (Reason.WITHIN_LIMIT, None)
    clock.advance(minutes=30)
    assert not (await kernel.quota.check(tight, "tokens", 0)).allowed
    past = await kernel.quota.check(roomy, "tokens", 9_301)  # crossing it would start a grace
    assert (past.reason, past.grace_ends_at) == (Reason.IN_GRACE, clock() + HOUR)
