"""The sandbox clock over a real database: in dev mode it moves forward, the work due by
then is done (a month closed and invoiced, a scheduled downgrade applied, a trial ended),
every dev-mode kernel of the database reads it, and nothing outside dev mode does. Each test
has a database of its own: the clock is the deployment's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import InvalidInput, SandboxOff
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.quota.rules import Reason
from billing_kernel.sandbox.rules import Step, Unit, advanced
from tests.conftest import new_id

pytestmark = pytest.mark.anyio
MONTH = Step(1, Unit.MONTH)


def dev_kernel(database: Database, **settings: object) -> Kernel:
    return Kernel(database, Settings(database_url=str(database.url), dev_mode=True, **settings))


def near(moment: datetime, expected: datetime) -> bool:
    return abs(moment - expected) < timedelta(minutes=1)


async def test_a_month_moved_through_is_closed_and_invoiced_and_the_org_moves_on(
    own_database: Database,
) -> None:
    kernel = dev_kernel(own_database)
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug="growth")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await kernel.usage.record(org_id, "tokens", 6_000_000, idempotency_key="k-1")  # 1M over
    await kernel.plan_changes.change(org_id, "starter")  # a downgrade: at the month's end
    this_month = BillingPeriod.containing(kernel.now())
    expected = (await kernel.invoices.upcoming(org_id)).total

    moved = await kernel.sandbox.advance(MONTH)

    assert near(moved.clock.now, advanced(datetime.now(UTC), MONTH))
    assert kernel.sandbox.moved
    assert near(kernel.now(), moved.clock.now)
    [invoice] = [i for i in moved.closed.closed if i.org_id == org_id]
    assert (invoice.period_start, invoice.plan_slug) == (this_month.key, "growth")
    assert invoice.total == expected  # the fee from the org's start, 15.00 of overage
    assert [line.amount for line in invoice.lines][-1] == 15  # 1,000 blocks at 0.015
    assert await kernel.invoices.verify() == []
    state = await kernel.subscriptions.billing_state(org_id)
    assert state.plan_slug == "starter"  # the downgrade scheduled for the month's end applied
    assert (await kernel.sandbox.advance(Step(1, Unit.DAY))).closed.closed == ()  # once


async def test_a_trial_ends_by_the_moved_clock(own_database: Database) -> None:
    kernel = dev_kernel(own_database, ended_trial_blocks=True, past_due_grace_days=0)
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")  # a 30-day trial
    assert (await kernel.quota.check(org_id, "tokens")).allowed
    await kernel.sandbox.advance(Step(31, Unit.DAY))
    refused = await kernel.quota.check(org_id, "tokens")
    assert (refused.allowed, refused.reason) == (False, Reason.TRIAL_ENDED)


async def test_every_dev_kernel_reads_the_clock_and_no_other_does(own_database: Database) -> None:
    mover, other = dev_kernel(own_database), dev_kernel(own_database)
    real = Kernel(own_database, Settings(database_url=str(own_database.url)))
    await mover.sandbox.advance(Step(3, Unit.DAY))
    assert not other.sandbox.moved  # not yet read
    await other.sandbox.refresh()
    assert other.sandbox.state().offset == mover.sandbox.state().offset
    assert near(other.now(), datetime.now(UTC) + timedelta(days=3))

    await real.sandbox.refresh()  # outside dev mode: nothing read, real time
    assert not real.sandbox.moved
    assert near(real.now(), datetime.now(UTC))
    for move in (real.sandbox.advance(MONTH), real.sandbox.reset()):
        with pytest.raises(SandboxOff) as refused:
            await move
        assert refused.value.status == 403
        assert "dev mode" in refused.value.message

    with pytest.raises(InvalidInput, match="forward only"):
        await mover.sandbox.set(datetime.now(UTC) + timedelta(days=1))
    assert near(mover.now(), datetime.now(UTC) + timedelta(days=3))  # unmoved by the refusal
    target = datetime.now(UTC) + timedelta(days=10)
    assert (await mover.sandbox.set(target)).clock.now >= target
    back = await mover.sandbox.reset()
    assert (back.offset, mover.sandbox.moved) == (timedelta(0), False)
    await other.sandbox.refresh()
    assert not other.sandbox.moved


async def test_moves_at_once_each_move_the_clock(own_database: Database) -> None:
    kernels = [dev_kernel(own_database) for _ in range(4)]
    await asyncio.gather(*(k.sandbox.advance(Step(1, Unit.DAY)) for k in kernels))
    await kernels[0].sandbox.refresh()
    offset = kernels[0].sandbox.state().offset
    assert timedelta(days=4) <= offset < timedelta(days=4, minutes=1)
