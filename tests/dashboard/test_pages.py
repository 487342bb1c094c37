"""The billing page as served (no browser): what it folds away, and whose name it wears.
A database of the test's own: the metric defined here would show on every other org's page."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing_kernel.discounts.rules import FEE, Coupon, Duration, Kind
from billing_kernel.members.rules import MemberRole
from billing_kernel.metrics.rules import Metric
from tests.conftest import new_id
from tests.web import Api

pytestmark = pytest.mark.anyio


async def test_a_metric_the_plan_leaves_out_and_the_org_never_used_is_folded(
    own_api: Api,
) -> None:
    kernel = own_api.kernel
    for key, name in (("pages", "Pages processed"), ("docs", "Documents")):
        await kernel.metrics.define(Metric(key, name, key))
    org_id = new_id()
    owner = await own_api.member(org_id, MemberRole.OWNER)
    await kernel.orgs.create(org_id, name="Acme Robotics", plan_slug="starter")  # names it
    await kernel.usage.record(org_id, "docs", 3, idempotency_key="d")  # used: shown
    page = (await own_api.client.get("/app/billing", headers=owner)).text
    assert "Billing · Acme Robotics" in page
    assert 'data-testid="metric-docs"' in page
    assert "not in your plan</span>" in page  # docs: used, though Starter gives none
    assert 'data-testid="metric-pages"' not in page
    assert "1 more metric: not in your plan, and not used this month" in page
    assert '<p class="muted">Pages processed</p>' in page


async def test_an_orgs_admins_see_its_coupons_and_its_members_do_not(api: Api) -> None:
    kernel = api.kernel
    org_id = new_id()
    owner = await api.member(org_id, MemberRole.OWNER)
    member = await api.member(org_id, MemberRole.MEMBER)
    code = new_id("FEE")
    coupon = Coupon(code, "Launch", Kind.PERCENT, Decimal(20), Duration.FOREVER, applies_to=(FEE,))
    await kernel.discounts.create(coupon)
    await kernel.discounts.apply(org_id, code)
    page = (await api.client.get("/app/billing", headers=owner)).text
    assert 'data-testid="discounts"' in page
    assert f"<li>Launch ({code}): 20% off, on the plan fee, every month</li>" in page
    seen = (await api.client.get("/app/billing", headers=member)).text
    assert 'data-testid="discounts"' not in seen
    assert code not in seen
