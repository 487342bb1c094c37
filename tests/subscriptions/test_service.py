"""Plan changes an org makes itself, on both databases: the preview is the execution, to
the cent; upgrades at once, downgrades at the period's end (or at once, if so configured)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from billing_kernel.common.money import round_money
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.db.tables import subscription_history
from billing_kernel.errors import CurrencyChange, PreviewStale
from billing_kernel.invoices.rules import LineKind
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.subscriptions.rules import ChangeKind
from billing_kernel.usage.rules import UsageReport
from tests.conftest import Clock, make_kernel, new_id

pytestmark = pytest.mark.anyio

JUNE = BillingPeriod.parse("2026-06")  # 30 days: 2,592,000 seconds


async def paying_org(kernel: Kernel, clock: Clock, plan: str) -> str:
    clock.now = JUNE.start
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug=plan)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    return org_id


async def test_an_upgrade_bills_exactly_the_lines_its_preview_showed(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "starter")
    clock.now = JUNE.start + timedelta(days=20, hours=7, minutes=30, seconds=11)
    await kernel.usage.record(org_id, "tokens", 2_000_000, idempotency_key="big")
    preview = await kernel.plan_changes.preview(org_id, "growth")
    assert (preview.kind, preview.scheduled, preview.effective_at) == (
        ChangeKind.UPGRADE,
        False,
        clock.now,
    )
    assert [(line.kind, str(line.amount)) for line in preview.lines] == [
        (LineKind.PRORATION_CREDIT, "-15.82"),  # 49.00 x 836,989 / 2,592,000 s
        (LineKind.PRORATION_CHARGE, "64.26"),  # 199.00 x 836,989 / 2,592,000 s
    ]
    # Before: 49.00 and 20.00 for 1M tokens over Starter's 1M. After: Growth includes 5M.
    assert (preview.upcoming_before.total, preview.upcoming_after.total) == (
        Decimal("69.00"),
        Decimal("97.44"),
    )
    made = await kernel.plan_changes.change(org_id, "growth")
    assert made.lines == preview.lines
    assert made.state.plan_slug == "growth"
    upcoming = await kernel.invoices.upcoming(org_id)
    assert upcoming.lines[1:3] == preview.lines  # after Starter's base fee
    assert upcoming.total == preview.upcoming_after.total
    # Changing back at the same instant nets the two changes to nothing.
    await kernel.plan_changes.change(org_id, "starter")
    assert await kernel.subscriptions.scheduled_change(org_id) is not None  # a downgrade waits


async def test_a_downgrade_waits_for_the_period_end_and_can_be_canceled(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "growth")
    clock.now = JUNE.start + timedelta(days=10)
    made = await kernel.plan_changes.change(org_id, "starter")
    assert (made.kind, made.scheduled, made.effective_at, made.lines) == (
        ChangeKind.DOWNGRADE,
        True,
        JUNE.end,
        (),
    )
    assert made.state.plan_slug == "growth"  # until the month ends
    assert made.upcoming_after == made.upcoming_before
    assert await kernel.subscriptions.cancel_scheduled(org_id) is True
    assert await kernel.subscriptions.scheduled_change(org_id) is None
    assert await kernel.subscriptions.cancel_scheduled(org_id) is False
    await kernel.plan_changes.change(org_id, "starter")
    scheduled = await kernel.subscriptions.scheduled_change(org_id)
    assert scheduled is not None
    assert (scheduled.plan_slug, scheduled.effective_at) == ("starter", JUNE.end)

    clock.now = JUNE.end + timedelta(days=1, minutes=1)  # June has closed
    june = await kernel.invoices.close(org_id, JUNE)
    assert june is not None
    assert [(line.kind, str(line.amount)) for line in june.lines] == [
        ("base_fee", "199.00")  # all June on Growth
    ]
    state = await kernel.subscriptions.billing_state(org_id)
    assert state.plan_slug == "starter"
    july = await kernel.invoices.upcoming(org_id)
    assert [(line.kind, str(line.amount)) for line in july.lines] == [
        (LineKind.BASE_FEE, "49.00")  # from July's first second
    ]
    assert await kernel.subscriptions.scheduled_change(org_id) is None


async def test_subscribing_to_the_plan_it_is_on_keeps_its_scheduled_change(
    kernel: Kernel, clock: Clock
) -> None:
    """What `PUT /api/v1/orgs/{id}` does: only what differs changes. The plan the org is on
    again keeps its scheduled downgrade (set_plan would drop it); another plan drops it."""
    org_id = await paying_org(kernel, clock, "growth")
    clock.now = JUNE.start + timedelta(days=10)
    await kernel.plan_changes.change(org_id, "starter")  # scheduled for June's end
    same = await kernel.subscriptions.subscribe(org_id, plan_slug="growth")
    assert (same.plan_slug, same.status) == ("growth", BillingStatus.ACTIVE)
    assert await kernel.subscriptions.scheduled_change(org_id) is not None
    moved = await kernel.subscriptions.subscribe(
        org_id, plan_slug="enterprise", status=BillingStatus.PAST_DUE
    )
    assert (moved.plan_slug, moved.status) == ("enterprise", BillingStatus.PAST_DUE)
    assert await kernel.subscriptions.scheduled_change(org_id) is None


async def test_an_immediate_downgrade_credits_the_rest_of_the_period(
    database: Database, clock: Clock
) -> None:
    kernel = make_kernel(database, clock, downgrade="immediate")
    org_id = await paying_org(kernel, clock, "growth")
    clock.now = JUNE.start + timedelta(days=15)  # half of June left
    made = await kernel.plan_changes.change(org_id, "starter")
    assert [(line.kind, str(line.amount)) for line in made.lines] == [
        (LineKind.PRORATION_CREDIT, "-99.50"),
        (LineKind.PRORATION_CHARGE, "24.50"),
    ]
    assert made.state.plan_slug == "starter"
    assert made.upcoming_after.total == Decimal("124.00")


async def test_an_upgrade_drops_a_scheduled_downgrade_and_a_billed_org_keeps_its_currency(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "growth")
    await kernel.plan_changes.change(org_id, "starter")
    assert await kernel.subscriptions.scheduled_change(org_id) is not None
    await kernel.plan_changes.change(org_id, "enterprise")
    assert await kernel.subscriptions.scheduled_change(org_id) is None
    same = await kernel.plan_changes.change(org_id, "enterprise")
    assert (same.kind, same.lines) == (ChangeKind.NONE, ())

    euros = await kernel.plans.create(
        Plan(slug=new_id("eur"), name="Euro", currency="EUR", monthly_price=Decimal("999"))
    )
    try:
        with pytest.raises(CurrencyChange):
            await kernel.plan_changes.change(org_id, euros.slug)
        with pytest.raises(CurrencyChange):
            await kernel.subscriptions.set_plan(org_id, euros.slug)
        trial = new_id()
        await kernel.orgs.create(trial, plan_slug="starter")  # not billed: may move
        assert (await kernel.subscriptions.set_plan(trial, euros.slug)).plan_slug == euros.slug
        # Canceled now, but billed in USD earlier this month: still one currency a month.
        clock.advance(days=3)
        await kernel.subscriptions.set_status(org_id, BillingStatus.CANCELED)
        for move in (kernel.subscriptions.set_plan, kernel.plan_changes.change):
            with pytest.raises(CurrencyChange, match="billed in USD this period"):
                await move(org_id, euros.slug)
        assert (await kernel.invoices.upcoming(org_id)).currency == "USD"
        clock.now = JUNE.end  # a new month, not billed in it: it may move
        assert (await kernel.subscriptions.set_plan(org_id, euros.slug)).plan_slug == euros.slug
        assert (await kernel.invoices.upcoming(org_id)).currency == "EUR"
    finally:
        await kernel.plans.deactivate(euros.slug)


async def test_a_scheduled_downgrade_takes_effect_when_due_from_its_moment(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "growth")
    await kernel.plan_changes.change(org_id, "starter")
    clock.now = JUNE.end + timedelta(hours=5)  # the worker applies it when it runs
    assert await kernel.subscriptions.apply_due_changes() >= 1
    state = await kernel.subscriptions.billing_state(org_id)
    assert state.plan_slug == "starter"
    july = await kernel.invoices.upcoming(org_id)
    assert [line.kind for line in july.lines] == [LineKind.BASE_FEE]  # from July 1, 00:00


async def test_a_change_confirmed_minutes_after_its_preview_bills_what_the_preview_said(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "starter")
    clock.now = JUNE.start + timedelta(days=3, seconds=17)
    preview = await kernel.plan_changes.preview(org_id, "enterprise")
    clock.advance(minutes=4, seconds=41)  # the user reads, then confirms
    made = await kernel.plan_changes.change(org_id, "enterprise", at=preview.effective_at)
    assert made.lines == preview.lines
    assert (await kernel.invoices.upcoming(org_id)).total == preview.upcoming_after.total
    # A preview too old, or one the org has changed since, is refused: preview again.
    clock.advance(minutes=11)
    earlier = preview.effective_at  # before the change it confirmed
    with pytest.raises(PreviewStale, match="preview the change again"):
        await kernel.plan_changes.change(org_id, "growth", at=earlier)
    other = new_id()
    await kernel.orgs.create(other, plan_slug="starter")
    stale = await kernel.plan_changes.preview(other, "growth")
    clock.advance(minutes=11)
    with pytest.raises(PreviewStale, match="preview the change again"):
        await kernel.plan_changes.change(other, "growth", at=stale.effective_at)
    # A downgrade's moment is the period's end: confirmed whenever, it is scheduled then.
    downgrade = await kernel.plan_changes.preview(org_id, "growth")
    clock.advance(minutes=30)
    scheduled = await kernel.plan_changes.change(
        org_id, "growth", at=downgrade.effective_at, token=downgrade.token
    )
    assert (scheduled.scheduled, scheduled.effective_at) == (True, JUNE.end)


async def own_plan(kernel: Kernel, price: str) -> Plan:
    """A plan of the test's own (tokens only), priced `price` a month."""
    plan = Plan(
        slug=new_id("plan"),
        name="Own",
        currency="USD",
        monthly_price=Decimal(price),
        metrics={"tokens": PlanMetric("tokens", 1_000, Decimal("0.5"), 1000)},
    )
    return await kernel.plans.create(plan)


async def test_a_confirmation_with_its_token_is_the_previewed_change_or_stale(
    kernel: Kernel, clock: Clock
) -> None:
    """Whatever the preview priced that changes before the confirmation makes it stale: a
    new price of the plan, the org's limit overrides, its status, its scheduled change."""
    target = await own_plan(kernel, "190.07")
    org_id = await paying_org(kernel, clock, "starter")
    clock.now = JUNE.start + timedelta(days=9)

    async def confirm_after(change: object) -> None:
        preview = await kernel.plan_changes.preview(org_id, target.slug)
        clock.advance(minutes=2)
        await change  # type: ignore[misc]
        with pytest.raises(PreviewStale, match="what it priced has changed"):
            await kernel.plan_changes.change(
                org_id, target.slug, at=preview.effective_at, token=preview.token
            )
        clock.advance(minutes=1)

    raised = kernel.plans.update(replace(target, monthly_price=Decimal("954.15")))
    await confirm_after(raised)
    await confirm_after(kernel.quota.set_override(org_id, "tokens", 5))
    preview = await kernel.plan_changes.preview(org_id, target.slug)  # nothing changes: holds
    clock.advance(minutes=3)
    with pytest.raises(PreviewStale, match="its token was given without at"):
        await kernel.plan_changes.change(org_id, target.slug, token=preview.token)
    made = await kernel.plan_changes.change(
        org_id, target.slug, at=preview.effective_at, token=preview.token
    )
    assert made.lines == preview.lines
    share = Decimal((JUNE.end - preview.effective_at) // timedelta(seconds=1)) / 2_592_000
    assert [line.amount for line in made.lines] == [  # at the new price: 954.15, not 190.07
        -round_money(Decimal("49.00") * share),
        round_money(Decimal("954.15") * share),
    ]


async def test_a_status_or_schedule_changed_since_the_preview_makes_it_stale(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "growth")
    clock.now = JUNE.start + timedelta(days=9)
    preview = await kernel.plan_changes.preview(org_id, "enterprise")
    await kernel.plan_changes.change(org_id, "starter")  # a downgrade scheduled meanwhile
    with pytest.raises(PreviewStale):
        await kernel.plan_changes.change(
            org_id, "enterprise", at=preview.effective_at, token=preview.token
        )
    preview = await kernel.plan_changes.preview(org_id, "enterprise")
    await kernel.subscriptions.set_status(org_id, BillingStatus.PAST_DUE)
    with pytest.raises(PreviewStale):
        await kernel.plan_changes.change(
            org_id, "enterprise", at=preview.effective_at, token=preview.token
        )


async def test_choosing_the_plan_it_is_on_keeps_a_scheduled_downgrade(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "growth")
    clock.now = JUNE.start + timedelta(days=9)
    downgrade = await kernel.plan_changes.change(org_id, "starter")
    assert downgrade.scheduled
    same = await kernel.plan_changes.preview(org_id, "growth")
    assert (same.kind, same.lines) == (ChangeKind.NONE, ())
    made = await kernel.plan_changes.change(
        org_id, "growth", at=same.effective_at, token=same.token
    )
    assert made.kind is ChangeKind.NONE
    scheduled = await kernel.subscriptions.scheduled_change(org_id)
    assert scheduled is not None
    assert (scheduled.plan_slug, scheduled.effective_at) == ("starter", JUNE.end)


async def test_an_upgrade_at_the_periods_first_second_previews_lines_that_add_up_to_its_cost(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await paying_org(kernel, clock, "starter")  # since the first of June
    clock.now = JUNE.end  # 00:00:00 of the first of July
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    preview = await kernel.plan_changes.preview(org_id, "growth")
    cost = preview.upcoming_after.total - preview.upcoming_before.total
    assert sum(line.amount for line in preview.lines) == cost
    assert [(line.kind, str(line.amount)) for line in preview.lines] == [
        (LineKind.PRORATION_CREDIT, "-49.00"),
        (LineKind.BASE_FEE, "199.00"),
    ]
    made = await kernel.plan_changes.change(
        org_id, "growth", at=preview.effective_at, token=preview.token
    )
    assert made.lines == preview.lines
    assert (await kernel.invoices.upcoming(org_id)).total == preview.upcoming_after.total


async def test_each_change_is_numbered_after_the_last_even_when_one_batch_makes_many(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """The history's key is (org, change number): on PostgreSQL a sequence numbers changes,
    on SQLite the insert does; either way after every change before, one number each, in
    the order they were made."""
    h = subscription_history.c
    async with database.read() as conn:
        before = (await conn.execute(select(func.max(h.change_id)))).scalar_one() or 0
    made = sorted(new_id() for _ in range(3))  # three orgs the batch creates, one statement
    await kernel.usage.record_batch([UsageReport(o, "tokens", 1, new_id("e")) for o in made])
    org_id = made[0]
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    async with database.read() as conn:
        rows = (
            await conn.execute(
                select(h.org_id, h.change_id, h.status)
                .where(h.org_id.in_(made))
                .order_by(h.change_id)
            )
        ).all()
    numbers = [row.change_id for row in rows]
    assert len(set(numbers)) == 4
    assert min(numbers) > before
    assert [row.org_id for row in rows[:3]] == made  # created together, in org order
    assert (rows[3].org_id, rows[3].status) == (org_id, "active")  # the change after
