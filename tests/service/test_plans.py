import logging
from decimal import Decimal

import pytest

from billing_kernel.errors import PlanInactive, PlanNotFound
from billing_kernel.service import BillingService
from billing_kernel.store.database import Database
from tests.conftest import Clock, make_service, new_id, save_plan

pytestmark = pytest.mark.anyio

SEEDED = {
    # slug: (price, tokens, runs, seats, per 1k tokens, per run, per seat)
    "internal-dev": ("0.00", 10_000_000, 10_000, 100, "0", "0", "0"),
    "starter": ("49.00", 1_000_000, 200, 3, "0.02", "0.25", "15.00"),
    "growth": ("199.00", 5_000_000, 1_000, 10, "0.015", "0.20", "12.00"),
    "enterprise": ("599.00", 20_000_000, 5_000, 50, "0.01", "0.15", "10.00"),
}


async def test_the_migration_seeds_the_four_reference_plans_exactly(
    service: BillingService,
) -> None:
    plans = {plan.slug: plan for plan in await service.list_plans()}
    assert set(SEEDED) <= set(plans)
    for slug, (price, tokens, runs, seats, per_1k, per_run, per_seat) in SEEDED.items():
        plan = plans[slug]
        assert (plan.currency, plan.monthly_price) == ("USD", Decimal(price))
        assert isinstance(plan.monthly_price, Decimal)
        terms = plan.metrics
        assert [terms[m].included_quantity for m in ("tokens", "playbook_runs", "seats")] == [
            tokens,
            runs,
            seats,
        ]
        assert (terms["tokens"].overage_unit_price, terms["tokens"].overage_unit_size) == (
            Decimal(per_1k),
            1000,
        )
        assert terms["playbook_runs"].overage_unit_price == Decimal(per_run)
        assert terms["seats"].overage_unit_price == Decimal(per_seat)


async def test_plans_are_listed_cheapest_first_and_inactive_ones_are_hidden(
    service: BillingService, database: Database, clock: Clock
) -> None:
    hidden = await save_plan(database, clock(), active=False)
    listed = await service.list_plans()
    assert hidden.slug not in {p.slug for p in listed}
    prices = [p.monthly_price for p in listed]
    assert prices == sorted(prices)
    assert (await service.get_plan_by_slug(hidden.slug)).is_active is False


async def test_get_plan_by_slug_refuses_an_unknown_slug(service: BillingService) -> None:
    assert (await service.get_plan_by_slug("growth")).name == "Growth"
    with pytest.raises(PlanNotFound, match="no-such-plan"):
        await service.get_plan_by_slug("no-such-plan")


async def test_default_plan_follows_the_setting(database: Database, clock: Clock) -> None:
    service = make_service(database, clock, default_plan_slug="growth")
    assert (await service.get_default_plan()).slug == "growth"


@pytest.mark.parametrize("configured", ["no-such-plan", "inactive"])
async def test_an_unusable_default_plan_falls_back_to_internal_dev_with_one_warning(
    database: Database, clock: Clock, caplog: pytest.LogCaptureFixture, configured: str
) -> None:
    slug = (
        (await save_plan(database, clock(), active=False)).slug
        if configured == "inactive"
        else configured
    )
    service = make_service(database, clock, default_plan_slug=slug)
    with caplog.at_level(logging.WARNING, logger="billing_kernel.service"):
        assert (await service.get_default_plan()).slug == "internal-dev"
        org_id = new_id()
        await service.create_org(org_id)
        assert (await service.get_org_billing_state(org_id)).plan_slug == "internal-dev"
    warnings = [r for r in caplog.records if slug in r.getMessage()]
    assert len(warnings) == 1


async def test_set_org_plan_refuses_unknown_and_inactive_plans_and_changes_nothing(
    service: BillingService, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    await service.create_org(org_id)
    inactive = await save_plan(database, clock(), active=False)
    with pytest.raises(PlanNotFound):
        await service.set_org_plan(org_id, "no-such-plan")
    with pytest.raises(PlanInactive):
        await service.set_org_plan(org_id, inactive.slug)
    assert (await service.get_org_billing_state(org_id)).plan_slug == "internal-dev"

    clock.advance(hours=1)
    state = await service.set_org_plan(org_id, "growth")
    assert state.plan_slug == "growth"
    assert state.updated_at == clock.now
    assert (await service.build_org_billing_summary(org_id)).plan.slug == "growth"
