"""An org's entitlements through the service, on both databases: read without a transaction
of its own, and in one when a scheduled change of plan is due first."""

from datetime import timedelta

import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from tests.conftest import Clock, new_id

pytestmark = pytest.mark.anyio


async def test_a_due_downgrade_is_applied_before_the_entitlements_are_read(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="growth")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await kernel.features.set_own_value(org_id, "beta", True)
    before = await kernel.features.entitlements(org_id)
    assert (before.plan_slug, before.features["support"], before.limits["seats"].limit) == (
        "growth",
        "priority",
        10,
    )
    await kernel.plan_changes.change(org_id, "starter")  # a downgrade: at the month's end
    assert (await kernel.features.entitlements(org_id)).plan_slug == "growth"  # not yet
    clock.now = BillingPeriod.containing(clock()).end + timedelta(minutes=1)
    after = await kernel.features.entitlements(org_id)
    assert (after.plan_slug, after.features["support"], after.limits["seats"].limit) == (
        "starter",
        "email",
        3,
    )
    assert after.features["beta"] is True  # its own value stays with the org
    assert after.own == frozenset({"beta"})
    assert (await kernel.subscriptions.billing_state(org_id)).plan_slug == "starter"  # applied
