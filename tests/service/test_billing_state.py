from datetime import timedelta

import pytest

from billing_kernel.domain.billing_state import BillingStatus, MemberRole
from billing_kernel.errors import InvalidInput, MemberNotFound, OrgNotFound
from billing_kernel.service import BillingService
from billing_kernel.store.database import Database
from billing_kernel.store.orgs import OrgRepository
from tests.conftest import Clock, make_service, new_id, row_counts

pytestmark = pytest.mark.anyio


async def test_a_missing_state_is_seeded_on_first_read_with_a_trial_on_the_default_plan(
    service: BillingService, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    async with database.transaction() as conn:
        await OrgRepository(conn).ensure_orgs([org_id], clock())  # an org with no state yet
    state = await service.get_org_billing_state(org_id)
    assert state.plan_slug == "internal-dev"
    assert state.status is BillingStatus.TRIAL
    assert state.trial_ends_at == clock.now + timedelta(days=30)
    assert state.trial_days_left(clock.now) == 30

    clock.advance(days=3)
    assert await service.get_org_billing_state(org_id) == state  # seeded once, then kept


async def test_trial_length_follows_the_setting(database: Database, clock: Clock) -> None:
    service = make_service(database, clock, trial_days=14)
    state = await service.create_org(new_id(), name="Acme")
    assert state.trial_ends_at == clock.now + timedelta(days=14)
    clock.advance(days=14, seconds=1)
    assert state.trial_days_left(clock.now) == 0


async def test_an_unknown_org_is_not_found_and_not_created(
    service: BillingService, database: Database
) -> None:
    before = await row_counts(database)
    with pytest.raises(OrgNotFound):
        await service.get_org_billing_state(new_id())
    with pytest.raises(OrgNotFound):
        await service.build_org_billing_summary(new_id())
    assert await row_counts(database) == before


async def test_create_org_is_idempotent_and_keeps_the_first_state(
    service: BillingService, clock: Clock
) -> None:
    org_id = new_id()
    first = await service.create_org(org_id, plan_slug="starter")
    clock.advance(days=1)
    again = await service.create_org(org_id, name="Renamed", plan_slug="growth")
    assert again == first


async def test_create_org_refuses_a_bad_id(service: BillingService, database: Database) -> None:
    before = await row_counts(database)
    with pytest.raises(InvalidInput, match="longer than 64"):
        await service.create_org("o" * 65)
    with pytest.raises(InvalidInput, match="name contains control characters"):
        await service.create_org(new_id(), name="nul\x00byte")
    org_id = new_id()
    await service.create_org(org_id)
    with pytest.raises(InvalidInput, match="email contains control characters"):
        await service.add_org_member(org_id, "u1", email="a\x00@example.com")
    assert await row_counts(database) == {
        **before,
        "orgs": before["orgs"] + 1,
        "org_billing_state": before["org_billing_state"] + 1,
    }


async def test_members_are_seats_and_the_period_peak_is_kept(
    service: BillingService, clock: Clock
) -> None:
    org_id = new_id()
    await service.create_org(org_id)
    assert await service.add_org_member(org_id, "u1", MemberRole.OWNER) == 1
    assert await service.add_org_member(org_id, "u2", MemberRole.ADMIN) == 2
    assert await service.add_org_member(org_id, "u3") == 3
    assert await service.add_org_member(org_id, "u3", MemberRole.ADMIN) == 3  # role change
    assert await service.remove_org_member(org_id, "u2") == 2
    assert await service.list_org_members(org_id) == [
        ("u1", MemberRole.OWNER),
        ("u3", MemberRole.ADMIN),
    ]
    usage = await service.get_org_usage_for_current_period(org_id)
    assert (usage.used["seats"], usage.peaks["seats"]) == (2, 3)

    clock.advance(days=31)  # next month: the peak starts again from the live count
    usage = await service.get_org_usage_for_current_period(org_id)
    assert (usage.used["seats"], usage.peaks["seats"]) == (2, 2)


async def test_member_changes_need_an_existing_org_and_member(service: BillingService) -> None:
    with pytest.raises(OrgNotFound):
        await service.add_org_member(new_id(), "u1")
    org_id = new_id()
    await service.create_org(org_id)
    with pytest.raises(MemberNotFound):
        await service.remove_org_member(org_id, "nobody")
