from datetime import UTC, datetime, timedelta

import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.errors import InvalidInput, MemberNotFound, OrgNotFound
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.repository import OrgRepository
from billing_kernel.orgs.rules import BillingStatus, OrgOrigin
from tests.conftest import Clock, make_kernel, new_id, row_counts

pytestmark = pytest.mark.anyio


async def test_a_missing_state_is_seeded_on_first_read_with_a_trial_on_the_default_plan(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    async with database.transaction() as conn:
        await OrgRepository(UnitOfWork(conn)).ensure_orgs(
            [org_id], clock(), OrgOrigin.API
        )  # an org with no state yet
    state = await kernel.subscriptions.billing_state(org_id)
    assert state.plan_slug == "internal-dev"
    assert state.status is BillingStatus.TRIAL
    assert state.trial_ends_at == clock.now + timedelta(days=30)
    assert state.trial_days_left(clock.now) == 30

    clock.advance(days=3)
    assert await kernel.subscriptions.billing_state(org_id) == state  # seeded once, then kept


async def test_trial_length_follows_the_setting(database: Database, clock: Clock) -> None:
    kernel = make_kernel(database, clock, trial_days=14)
    state = await kernel.orgs.create(new_id(), name="Acme")
    assert state.trial_ends_at == clock.now + timedelta(days=14)
    clock.advance(days=14, seconds=1)
    assert state.trial_days_left(clock.now) == 0


async def test_an_unknown_org_is_not_found_and_not_created(
    kernel: Kernel, database: Database
) -> None:
    before = await row_counts(database)
    with pytest.raises(OrgNotFound):
        await kernel.subscriptions.billing_state(new_id())
    with pytest.raises(OrgNotFound):
        await kernel.summary.summary(new_id())
    assert await row_counts(database) == before


async def test_create_org_is_idempotent_and_keeps_the_first_state(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    first = await kernel.orgs.create(org_id, plan_slug="starter")
    clock.advance(days=1)
    again = await kernel.orgs.create(org_id, name="Renamed", plan_slug="growth")
    assert again == first


async def test_create_org_refuses_a_bad_id(kernel: Kernel, database: Database) -> None:
    before = await row_counts(database)
    with pytest.raises(InvalidInput, match="longer than 64"):
        await kernel.orgs.create("o" * 65)
    with pytest.raises(InvalidInput, match="name contains control characters"):
        await kernel.orgs.create(new_id(), name="nul\x00byte")
    org_id = new_id()
    await kernel.orgs.create(org_id)
    with pytest.raises(InvalidInput, match="email contains control characters"):
        await kernel.members.add(org_id, "u1", email="a\x00@example.com")
    assert await row_counts(database) == {
        **before,
        "orgs": before["orgs"] + 1,
        "org_billing_state": before["org_billing_state"] + 1,
        "subscription_history": before["subscription_history"] + 1,
    }


async def test_members_are_seats_and_the_period_peak_is_kept(kernel: Kernel, clock: Clock) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id)
    assert await kernel.members.add(org_id, "u1", MemberRole.OWNER) == 1
    assert await kernel.members.add(org_id, "u2", MemberRole.ADMIN) == 2
    assert await kernel.members.add(org_id, "u3") == 3
    assert await kernel.members.add(org_id, "u3", MemberRole.ADMIN) == 3  # role change
    assert await kernel.members.remove(org_id, "u2") == 2
    assert await kernel.members.of_org(org_id) == [
        ("u1", MemberRole.OWNER),
        ("u3", MemberRole.ADMIN),
    ]
    usage = await kernel.summary.period_usage(org_id)
    assert (usage.used["seats"], usage.peaks["seats"]) == (2, 3)

    clock.advance(days=31)  # next month: the peak starts again from the live count
    usage = await kernel.summary.period_usage(org_id)
    assert (usage.used["seats"], usage.peaks["seats"]) == (2, 2)


async def test_every_month_is_billed_the_seats_it_had_quiet_months_and_removals_too(
    kernel: Kernel, clock: Clock
) -> None:
    """March: two members join. April: nothing changes. May: one leaves (no one joined in
    May, so only the removal says May had two). June and July: nothing changes."""
    march, april, may, june = (BillingPeriod.parse(f"2026-0{m}") for m in (3, 4, 5, 6))
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    await kernel.members.add(org_id, "u1", MemberRole.OWNER)
    await kernel.members.add(org_id, "u2")
    clock.now = datetime(2026, 5, 20, tzinfo=UTC)
    assert await kernel.members.remove(org_id, "u2") == 1
    clock.now = datetime(2026, 7, 2, tzinfo=UTC)

    async def seats(period: BillingPeriod) -> tuple[int, int | None]:
        line = (await kernel.summary.summary(org_id, period=period)).metric("seats")
        return line.used, line.peak

    assert await seats(march.previous()) == (0, 0)  # before the org had anyone
    assert await seats(march) == (2, 2)
    assert await seats(april) == (2, 2)  # quiet: carried when May's change came
    assert await seats(may) == (2, 2)  # u2 held a seat in May before leaving
    assert await seats(june) == (1, 1)  # quiet since: today's count
    assert await seats(june.next()) == (1, 1)  # this month, live
    history = await kernel.summary.usage_history(org_id, first=march.previous(), last=june.next())
    assert [point.usage["seats"] for point in history.points] == [0, 2, 2, 2, 1, 1]
    dashboard = await kernel.summary.dashboard(org_id)
    assert [(month.key.month, totals["seats"]) for month, totals in dashboard.history] == [
        (3, 2),
        (4, 2),
        (5, 2),
        (6, 1),
    ]


async def test_member_changes_need_an_existing_org_and_member(kernel: Kernel) -> None:
    with pytest.raises(OrgNotFound):
        await kernel.members.add(new_id(), "u1")
    org_id = new_id()
    await kernel.orgs.create(org_id)
    with pytest.raises(MemberNotFound):
        await kernel.members.remove(org_id, "nobody")
