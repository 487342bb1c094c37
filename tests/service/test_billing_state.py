from datetime import timedelta

import pytest

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
    state = await kernel.orgs.billing_state(org_id)
    assert state.plan_slug == "internal-dev"
    assert state.status is BillingStatus.TRIAL
    assert state.trial_ends_at == clock.now + timedelta(days=30)
    assert state.trial_days_left(clock.now) == 30

    clock.advance(days=3)
    assert await kernel.orgs.billing_state(org_id) == state  # seeded once, then kept


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
        await kernel.orgs.billing_state(new_id())
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


async def test_member_changes_need_an_existing_org_and_member(kernel: Kernel) -> None:
    with pytest.raises(OrgNotFound):
        await kernel.members.add(new_id(), "u1")
    org_id = new_id()
    await kernel.orgs.create(org_id)
    with pytest.raises(MemberNotFound):
        await kernel.members.remove(org_id, "nobody")
