from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from billing_kernel.config import Settings
from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from billing_kernel.errors import (
    InvalidInput,
    NoDefaultPlan,
    PlanExists,
    PlanInactive,
    PlanIsDefault,
    PlanNotFound,
    UnknownMetric,
)
from billing_kernel.kernel import Kernel
from billing_kernel.metrics.rules import Metric
from billing_kernel.plans.rules import Enforcement, Plan, PlanMetric, Policy
from billing_kernel.pricing.rules import Price, PriceModel, Tier
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import (
    BACKENDS,
    Clock,
    make_kernel,
    new_id,
    save_plan,
    scratch_postgres_database,
)

pytestmark = pytest.mark.anyio

SEEDED = {
    # slug: (price, tokens, runs, seats, per 1k tokens, per run, per seat)
    "internal-dev": ("0.00", 10_000_000, 10_000, 100, "0", "0", "0"),
    "starter": ("49.00", 1_000_000, 200, 3, "0.02", "0.25", "15.00"),
    "growth": ("199.00", 5_000_000, 1_000, 10, "0.015", "0.20", "12.00"),
    "enterprise": ("599.00", 20_000_000, 5_000, 50, "0", "0.15", "10.00"),
}


async def test_the_migration_seeds_the_four_reference_plans_exactly(
    kernel: Kernel,
) -> None:
    plans = {plan.slug: plan for plan in await kernel.plans.list_active()}
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
    # Enterprise's tokens are the demo's tiered price: 0.01 per 1,000 for the 80 M beyond
    # the 20 M included, then 0.008.
    tokens = plans["enterprise"].metrics["tokens"].price
    assert tokens == Price(
        PriceModel.GRADUATED,
        unit_size=1000,
        tiers=(Tier(80_000_000, Decimal("0.01")), Tier(None, Decimal("0.008"))),
    )
    assert tokens.cost(90_000_000).amount == Decimal("880.00")


async def test_plans_are_listed_cheapest_first_and_inactive_ones_are_hidden(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    hidden = await save_plan(database, clock(), active=False)
    listed = await kernel.plans.list_active()
    assert hidden.slug not in {p.slug for p in listed}
    prices = [p.monthly_price for p in listed]
    assert prices == sorted(prices)
    assert (await kernel.plans.get(hidden.slug)).is_active is False


async def test_get_plan_by_slug_refuses_an_unknown_slug(kernel: Kernel) -> None:
    assert (await kernel.plans.get("growth")).name == "Growth"
    with pytest.raises(PlanNotFound, match="no-such-plan"):
        await kernel.plans.get("no-such-plan")


async def test_the_default_plan_can_change_and_the_old_one_be_withdrawn(
    own_database: Database, clock: Clock
) -> None:
    kernel = make_kernel(own_database, clock)  # the default is the deployment's: its own
    assert (await kernel.plans.default()).slug == "internal-dev"
    with pytest.raises(PlanIsDefault, match="make another plan the default first"):
        await kernel.plans.deactivate("internal-dev")
    inactive = await save_plan(own_database, clock(), active=False)
    with pytest.raises(PlanInactive):
        await kernel.plans.set_default(inactive.slug)
    with pytest.raises(PlanNotFound):
        await kernel.plans.set_default("no-such-plan")
    assert (await kernel.plans.default()).slug == "internal-dev"

    growth = await kernel.plans.set_default("growth")
    assert growth.is_default
    assert (await kernel.plans.set_default("growth")) == growth
    assert not (await kernel.plans.get("internal-dev")).is_default
    assert [p.slug for p in await kernel.plans.list_active() if p.is_default] == ["growth"]
    org_id = new_id()
    await kernel.orgs.create(org_id)
    assert (await kernel.subscriptions.billing_state(org_id)).plan_slug == "growth"
    assert not (await kernel.plans.deactivate("internal-dev")).is_active
    with pytest.raises(PlanIsDefault):
        await kernel.plans.deactivate("growth")


async def test_a_plan_created_as_the_default_takes_over_from_the_last(
    own_database: Database, clock: Clock
) -> None:
    kernel = make_kernel(own_database, clock)
    team = Plan(slug=new_id("team"), name="Team", currency="USD", monthly_price=Decimal("20"))
    created = await kernel.plans.create(team, default=True)
    assert created.is_default
    assert (await kernel.plans.default()).slug == team.slug
    assert not (await kernel.plans.get("internal-dev")).is_default
    with pytest.raises(PlanExists):
        await kernel.plans.create(replace(team, name="Other"), default=True)
    assert (await kernel.plans.get(team.slug)).name == "Team"


async def test_set_org_plan_refuses_unknown_and_inactive_plans_and_changes_nothing(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id)
    inactive = await save_plan(database, clock(), active=False)
    with pytest.raises(PlanNotFound):
        await kernel.subscriptions.set_plan(org_id, "no-such-plan")
    with pytest.raises(PlanInactive):
        await kernel.subscriptions.set_plan(org_id, inactive.slug)
    assert (await kernel.subscriptions.billing_state(org_id)).plan_slug == "internal-dev"

    clock.advance(hours=1)
    state = await kernel.subscriptions.set_plan(org_id, "growth")
    assert state.plan_slug == "growth"
    assert state.updated_at == clock.now
    assert (await kernel.summary.summary(org_id)).plan.slug == "growth"


def team_plan(**changes: object) -> Plan:
    plan = Plan(
        slug=new_id("team"),
        name="Team",
        description="For small teams",
        currency="EUR",
        monthly_price=Decimal("79.50"),
        metrics={
            "tokens": PlanMetric("tokens", 2_000_000, Decimal("0.015"), 1000),
            "playbook_runs": PlanMetric(
                "playbook_runs", 500, Decimal("0.10"), 1, Policy(Enforcement.HARD, 10)
            ),
        },
    )
    return replace(plan, **changes)  # type: ignore[arg-type]


async def test_a_plan_is_created_active_and_offered_with_its_terms(kernel: Kernel) -> None:
    made = await kernel.plans.create(team_plan(is_active=False))
    try:
        assert made.is_active
        offered = {p.slug: p for p in await kernel.plans.list_active()}[made.slug]
        assert offered == made
        assert offered.metrics["playbook_runs"].policy == Policy(Enforcement.HARD, 10)
        assert offered.allowance("seats").included_quantity == 0  # not named: none of it
        org_id = new_id()
        await kernel.orgs.create(org_id, plan_slug=made.slug)
        thresholds = await kernel.alerts.thresholds(org_id)
        assert [t.key for t in thresholds["tokens"][0]] == ["80%", "100%"]
    finally:  # an offered plan would be the other tests' upgrade
        await kernel.plans.deactivate(made.slug)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"currency": "usd"}, "currency"),
        ({"currency": "EURO"}, "currency"),
        ({"monthly_price": Decimal("-1")}, "monthly_price"),
        ({"monthly_price": Decimal("1.001")}, "monthly_price"),
        ({"monthly_price": Decimal("10000000000")}, "monthly_price"),
        ({"monthly_price": Decimal("NaN")}, "monthly_price"),
        ({"name": ""}, "name"),
        ({"slug": " padded"}, "slug"),
        ({"metrics": {"nope": PlanMetric("nope", 1)}}, "metrics"),
        ({"metrics": {"tokens": PlanMetric("tokens", -1)}}, "included_quantity"),
        (
            {"metrics": {"tokens": PlanMetric("tokens", 1, Decimal("0.0000001"))}},
            "overage_unit_price",
        ),
        (
            {"metrics": {"tokens": PlanMetric("tokens", 1, overage_unit_size=0)}},
            "overage_unit_size",
        ),
        (
            {"metrics": {"tokens": PlanMetric("tokens", 1, policy=Policy(Enforcement.HARD, -5))}},
            "grace_percent",
        ),
    ],
)
async def test_an_invalid_plan_is_refused_naming_the_field_and_nothing_is_written(
    kernel: Kernel, changes: dict[str, object], field: str
) -> None:
    plan = team_plan(**changes)
    with pytest.raises((InvalidInput, UnknownMetric)) as refused:  # an unknown metric: 404
        await kernel.plans.create(plan)
    assert refused.value.details["field"] == field
    with pytest.raises(PlanNotFound):
        await kernel.plans.get(plan.slug)


async def test_a_slug_is_taken_once_and_a_withdrawn_plan_is_not_offered(kernel: Kernel) -> None:
    made = await kernel.plans.create(team_plan())
    with pytest.raises(PlanExists):
        await kernel.plans.create(team_plan(slug=made.slug, monthly_price=Decimal("1")))
    assert (await kernel.plans.get(made.slug)).monthly_price == Decimal("79.50")
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=made.slug)
    withdrawn = await kernel.plans.deactivate(made.slug)
    assert not withdrawn.is_active
    assert (await kernel.plans.deactivate(made.slug)) == withdrawn  # idempotent
    assert made.slug not in {p.slug for p in await kernel.plans.list_active()}
    assert (await kernel.subscriptions.billing_state(org_id)).plan_slug == made.slug  # kept
    with pytest.raises(PlanInactive):
        await kernel.subscriptions.set_plan(new_id(), made.slug)
    with pytest.raises(PlanIsDefault):
        await kernel.plans.deactivate("internal-dev")
    with pytest.raises(PlanNotFound):
        await kernel.plans.deactivate(new_id("plan"))


async def test_new_terms_make_a_new_version_and_each_org_keeps_the_one_it_subscribed_to(
    kernel: Kernel,
) -> None:
    made = await kernel.plans.create(team_plan(currency="USD"))
    try:
        early = new_id()
        await kernel.orgs.create(early, plan_slug=made.slug)
        raised = replace(
            made,
            monthly_price=Decimal("99.00"),
            metrics={
                **made.metrics,
                "playbook_runs": replace(made.metrics["playbook_runs"], included_quantity=1000),
            },
        )
        v2 = await kernel.plans.update(raised)
        assert (v2.version, v2.monthly_price) == (2, Decimal("99.00"))
        assert await kernel.plans.update(raised) == v2  # the same terms again: nothing new
        late = new_id()
        await kernel.orgs.create(late, plan_slug=made.slug)
        assert (await kernel.subscriptions.billing_state(early)).plan_version == 1
        assert (await kernel.subscriptions.billing_state(late)).plan_version == 2
        assert [p.version for p in await kernel.plans.versions(made.slug)] == [1, 2]
        assert (await kernel.plans.get(made.slug, version=1)).monthly_price == Decimal("79.50")
        with pytest.raises(PlanNotFound):
            await kernel.plans.get(made.slug, version=3)

        # Every reader of limits reads the org's version: the terms, the quota decision
        # (500 included, 10 % grace: 550 at most), the alert thresholds and the summary.
        assert (await kernel.quota.terms(early))["playbook_runs"].limit == 500
        assert (await kernel.quota.terms(late))["playbook_runs"].limit == 1000
        for org_id, allowed in ((early, False), (late, True)):
            consumed = await kernel.quota.consume(
                org_id, "playbook_runs", 560, idempotency_key=new_id("run")
            )
            assert consumed.decision.allowed is allowed
        await kernel.usage.record(late, "playbook_runs", 0, idempotency_key=new_id("e"))
        await kernel.usage.record(early, "playbook_runs", 420, idempotency_key=new_id("e"))
        crossed = [e for _, e in await kernel.events.events(org_id=early, limit=10)]
        assert [(e.data["limit"], e.data["used"]) for e in crossed] == [(500, 420)]
        assert not await kernel.events.events(org_id=late, limit=10)  # 560 of 1,000
        summary = await kernel.summary.summary(early)
        assert (summary.plan.version, summary.plan.monthly_price) == (1, Decimal("79.50"))

        # Moving to the same plan moves an org to its current version.
        assert (await kernel.subscriptions.set_plan(early, made.slug)).plan_version == 2
        assert (await kernel.quota.terms(early))["playbook_runs"].limit == 1000
    finally:
        await kernel.plans.deactivate(made.slug)


async def test_names_and_policies_change_in_place_for_every_version(kernel: Kernel) -> None:
    made = await kernel.plans.create(team_plan())
    try:
        v2 = await kernel.plans.update(replace(made, monthly_price=Decimal("80.00")))
        hard = Policy(Enforcement.HARD, 0, timedelta(hours=24))
        renamed = await kernel.plans.update(
            replace(
                v2,
                name="Team (2026)",
                description="",
                metrics={**v2.metrics, "tokens": replace(v2.metrics["tokens"], policy=hard)},
            )
        )
        assert (renamed.version, renamed.name, renamed.description) == (2, "Team (2026)", "")
        for plan in await kernel.plans.versions(made.slug):
            assert plan.name == "Team (2026)"
            assert plan.metrics["tokens"].policy == hard
        with pytest.raises(InvalidInput) as refused:
            await kernel.plans.update(replace(renamed, currency="USD"))
        assert refused.value.details["field"] == "currency"
        with pytest.raises(InvalidInput) as refused:
            await kernel.plans.update(replace(renamed, monthly_price=Decimal("-1")))
        assert refused.value.details["field"] == "monthly_price"
        assert (await kernel.plans.get(made.slug)) == renamed  # nothing written
        with pytest.raises(PlanNotFound):
            await kernel.plans.update(replace(made, slug=new_id("nope")))
    finally:
        await kernel.plans.deactivate(made.slug)


@pytest.fixture(params=BACKENDS)
def bare_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database as `billing-kernel migrate` leaves it: the schema, no metric, no plan."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bare.db'}"
        migrate.upgrade(url)
        yield url
    else:
        with scratch_postgres_database() as url:
            migrate.upgrade(url)
            yield url


async def test_a_new_deployment_offers_nothing_and_creates_no_org_until_a_plan_is_the_default(
    bare_url: str,
) -> None:
    kernel = Kernel.open(Settings(database_url=bare_url))
    try:
        assert await kernel.plans.list_active() == []
        await kernel.metrics.define(Metric("pages", "Pages", "pages"))
        with pytest.raises(NoDefaultPlan, match="plans create --default"):
            await kernel.orgs.create("acme")
        with pytest.raises(NoDefaultPlan):
            await kernel.quota.consume("acme", "pages", 1, idempotency_key="c1")
        event = UsageReport("acme", "pages", 3, "first", None)
        refused = await kernel.usage.record_batch([event])
        assert [o.status for o in refused.outcomes] == [RecordStatus.REFUSED]
        assert isinstance(refused.outcomes[0].error, NoDefaultPlan)
        assert await kernel.orgs.list_orgs(after=None, limit=10) == []

        pro = Plan(slug="pro", name="Pro", currency="USD", monthly_price=Decimal("30"))
        assert (await kernel.plans.create(pro, default=True)).is_default
        accepted = await kernel.usage.record_batch([event])
        assert [o.status for o in accepted.outcomes] == [RecordStatus.ACCEPTED]
        assert accepted.outcomes[0].created_org
        assert (await kernel.subscriptions.billing_state("acme")).plan_slug == "pro"
    finally:
        await kernel.aclose()


async def test_concurrent_default_changes_leave_exactly_one_active_default(
    own_database: Database, clock: Clock
) -> None:
    """Operators naming defaults and withdrawing plans at once: each call either takes
    effect or is refused for the state it found (never a database error), and exactly one
    active plan is the default after."""
    kernel = make_kernel(own_database, clock)
    outcomes: list[str] = []

    async def name(slug: str) -> None:
        try:
            outcomes.append((await kernel.plans.set_default(slug)).slug)
        except PlanInactive:  # withdrawn first
            outcomes.append(f"!{slug}")

    async def withdraw(slug: str) -> None:
        try:
            await kernel.plans.deactivate(slug)
            outcomes.append(f"-{slug}")
        except PlanIsDefault:
            outcomes.append(f"!{slug}")

    for _ in range(5):
        async with anyio.create_task_group() as tasks:
            for slug in ("starter", "growth", "enterprise", "starter", "growth"):
                tasks.start_soon(name, slug)
        marked = [p for p in await kernel.plans.list_active() if p.is_default]
        assert len(marked) == 1
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(withdraw, "enterprise")
        tasks.start_soon(name, "enterprise")
    defaults = [p for p in await kernel.plans.list_active() if p.is_default]
    assert len(defaults) == 1
    assert defaults[0].is_active
    assert sorted(outcomes[-2:]) in (["!enterprise", "enterprise"], ["!enterprise", "-enterprise"])
