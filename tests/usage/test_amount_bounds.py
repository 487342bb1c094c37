"""An org's month never comes to more than an invoice may (`common.money.MAX_AMOUNT`): a
usage write that would take it beyond is refused event by event, with the code that says
why, and everything else is counted and invoiced. On a database of the test's own, both
kinds; concurrent writers on PostgreSQL for real."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import AmountOutOfBounds
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import (
    MAX_UNIT_PRICE,
    Dimension,
    Price,
    PriceModel,
    Tier,
    ValuePrice,
)
from billing_kernel.usage.rules import RecordStatus, UsageReport
from tests.conftest import Clock

pytestmark = pytest.mark.anyio

APRIL = BillingPeriod.parse("2026-04")
RUNS = 10**12
"""Legal events of this many runs: on starter (200 included, 0.25 each beyond, 49.00 a
month), four come to 999,999,999,999.00, the most an amount may be less 0.99."""
MOST = Decimal("999999999999.99")


@pytest.fixture
def clock() -> Clock:
    return Clock(APRIL.start)


@pytest.fixture
async def kernel(own_database: Database, clock: Clock) -> Kernel:
    return Kernel(own_database, Settings(database_url=str(own_database.url)), clock=clock)  # type: ignore[arg-type]


async def paying(kernel: Kernel, *org_ids: str) -> None:
    for org_id in org_ids:
        await kernel.orgs.create(org_id, plan_slug="starter")
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)


def refused(outcome_error: object) -> AmountOutOfBounds:
    assert isinstance(outcome_error, AmountOutOfBounds)
    return outcome_error


async def test_events_beyond_the_bound_are_refused_one_by_one_and_every_org_is_invoiced(
    kernel: Kernel, clock: Clock
) -> None:
    """Six orgs' events in one batch, one org's five of 10^12 runs among them: the fifth
    would take its April beyond the bound and is refused with `amount_out_of_bounds`; the
    other 29 are counted. Later writes fill the month to the cent, and no further. April
    closes into six invoices that verify."""
    orgs = [f"org-{n}" for n in range(6)]
    await paying(kernel, *orgs)
    batch = [
        UsageReport(org_id, "playbook_runs", RUNS if org_id == "org-2" else 1_000, f"{org_id}-{n}")
        for n in range(5)
        for org_id in orgs
    ]
    result = await kernel.usage.record_batch(batch)

    statuses = [(o.event.idempotency_key, o.status) for o in result.outcomes if o.event]
    assert [key for key, status in statuses if status is RecordStatus.REFUSED] == ["org-2-4"]
    assert result.count(RecordStatus.ACCEPTED) == 29
    [refusal] = [refused(o.error) for o in result.outcomes if o.error is not None]
    assert refusal.code == "amount_out_of_bounds"
    assert refusal.status == 422
    assert refusal.message == (
        "with this event, the invoice of org 'org-2' for 2026-04 would come to "
        "1,249,999,999,999.00 at its terms now, beyond the 999,999,999,999.99 an amount may "
        "be; it was not counted"
    )
    assert result.totals[("org-2", APRIL.key, "playbook_runs")] == 4 * RUNS
    assert result.totals[("org-3", APRIL.key, "playbook_runs")] == 5_000

    # 0.99 of room: three runs more (0.75) fit, a fourth (1.00) does not, nor does the
    # refused event sent again: it was not counted, and is judged anew.
    assert (await kernel.usage.record("org-2", "playbook_runs", 3, idempotency_key="three")).status
    for quantity, key in ((1, "fourth"), (RUNS, "org-2-4")):
        with pytest.raises(
            AmountOutOfBounds, match=r"come to 1,(000,000,000,000\.00|249,999,999,999\.75) "
        ):
            await kernel.usage.record("org-2", "playbook_runs", quantity, idempotency_key=key)

    clock.now = APRIL.end + timedelta(days=2)
    report = await kernel.invoices.close_due()
    assert report.failed == ()
    totals = {invoice.org_id: invoice.total for invoice in report.closed}
    assert totals == {
        **{org_id: Decimal("1249.00") for org_id in orgs},  # 49.00 + (5,000 - 200) x 0.25
        "org-2": MOST - Decimal("0.24"),
    }
    assert await kernel.invoices.verify() == []


async def test_a_month_near_the_bound_is_priced_in_full_by_every_later_write(
    kernel: Kernel,
) -> None:
    """Once an org's month has come to near the bound, a write of another metric, small on
    its own, is judged against the whole month: tokens that add 0.98 fit, 0.02 more do not."""
    await paying(kernel, "org-1")
    for n in range(4):
        await kernel.usage.record("org-1", "playbook_runs", RUNS, idempotency_key=f"runs-{n}")
    # 1,000,000 tokens included, 0.02 per 1,000 beyond: 49,000 beyond come to 0.98.
    await kernel.usage.record("org-1", "tokens", 1_049_000, idempotency_key="tokens-1")
    with pytest.raises(AmountOutOfBounds, match=r"would come to 1,000,000,000,000\.00 "):
        await kernel.usage.record("org-1", "tokens", 1_000, idempotency_key="tokens-2")
    upcoming = await kernel.invoices.upcoming("org-1")
    assert upcoming.total == MOST - Decimal("0.01")  # 999,999,999,999.00 + 0.98


async def test_concurrent_writers_of_a_month_near_the_bound_never_pass_it(
    kernel: Kernel,
) -> None:
    """Twenty writers at once, each alone within the bound, of two metrics of one month
    with 999.99 of room: each worth 100.00, exactly nine are counted, whatever their order.
    Ten such months at once."""
    months = [f"org-{n}" for n in range(10)]
    await paying(kernel, *months)
    # 3,999,999,996,004 runs: (that - 200) x 0.25 + 49.00 = 999,999,999,000.00, 999.99
    # below the most; the tokens included cost nothing.
    for org_id in months:
        batch = [UsageReport(org_id, "playbook_runs", RUNS, f"base-{n}") for n in range(3)]
        batch.append(UsageReport(org_id, "playbook_runs", RUNS - 3_996, "base-3"))
        batch.append(UsageReport(org_id, "tokens", 1_000_000, "included"))
        result = await kernel.usage.record_batch(batch)
        assert result.count(RecordStatus.ACCEPTED) == 5

    async def write(org_id: str, n: int) -> RecordStatus:
        if n % 2:  # 400 runs, or 5,000,000 tokens: 100.00 either way
            report = UsageReport(org_id, "playbook_runs", 400, f"w-{n}")
        else:
            report = UsageReport(org_id, "tokens", 5_000_000, f"w-{n}")
        result = await kernel.usage.record_batch([report])
        [outcome] = result.outcomes
        assert outcome.error is None or isinstance(outcome.error, AmountOutOfBounds)
        return outcome.status

    statuses = await asyncio.gather(*(write(org, n) for org in months for n in range(20)))
    for m in range(len(months)):
        mine = statuses[m * 20 : (m + 1) * 20]
        assert mine.count(RecordStatus.ACCEPTED) == 9
        assert mine.count(RecordStatus.REFUSED) == 11
    for org_id in months:
        upcoming = await kernel.invoices.upcoming(org_id)
        assert upcoming.total == Decimal("999999999900.00")


async def test_a_refusal_in_a_callers_unit_of_work_keeps_the_callers_writes(
    kernel: Kernel,
) -> None:
    """In a unit of work the caller opened, a batch with an event beyond the bound counts
    the others, refuses that one, and leaves what the caller wrote before it."""
    await paying(kernel, "org-1")
    async with kernel.transaction() as uow:
        await kernel.usage.record("org-1", "tokens", 5, idempotency_key="before", uow=uow)
        batch = [UsageReport("org-1", "playbook_runs", RUNS, f"huge-{n}") for n in range(5)]
        batch.append(UsageReport("org-1", "playbook_runs", 3, "small"))
        result = await kernel.usage.record_batch(batch, uow=uow)
        assert [o.status for o in result.outcomes] == [
            *[RecordStatus.ACCEPTED] * 4,
            RecordStatus.REFUSED,
            RecordStatus.ACCEPTED,
        ]
        refused(result.outcomes[4].error)
    summary = await kernel.summary.summary("org-1")
    used = {line.metric.key: line.used for line in summary.usage}
    assert used["tokens"] == 5
    assert used["playbook_runs"] == 4 * RUNS + 3


async def test_a_consume_or_a_commit_beyond_the_bound_is_refused_and_writes_nothing(
    kernel: Kernel,
) -> None:
    """A consume that would take the month beyond the bound is refused (422) and records
    nothing; so is a reservation's commit, which keeps its hold until committed within the
    bound or released."""
    await paying(kernel, "org-1")
    for n in range(4):  # 999,999,999,999.00: 0.99 of room, three runs
        await kernel.usage.record("org-1", "playbook_runs", RUNS, idempotency_key=f"runs-{n}")
    with pytest.raises(AmountOutOfBounds, match=r"come to 1,000,000,000,000\.00 "):
        await kernel.quota.consume("org-1", "playbook_runs", 4, idempotency_key="consume-4")
    consumed = await kernel.quota.consume("org-1", "playbook_runs", 2, idempotency_key="consume-2")
    assert consumed.decision.allowed

    reserved = await kernel.quota.reserve("org-1", "playbook_runs", 1, idempotency_key="job")
    reservation_id = reserved.reservation.reservation_id
    with pytest.raises(AmountOutOfBounds, match=r"come to 1,000,000,000,000\.00 "):
        await kernel.reservations.commit(reservation_id, 2)
    held = await kernel.reservations.get(reservation_id)
    assert held.status == reserved.reservation.status
    committed = await kernel.reservations.commit(reservation_id, 1)
    assert committed.committed_quantity == 1

    summary = await kernel.summary.summary("org-1")
    used = {line.metric.key: line.used for line in summary.usage}
    assert used["playbook_runs"] == 4 * RUNS + 3
    upcoming = await kernel.invoices.upcoming("org-1")
    assert upcoming.total == MOST - Decimal("0.24")


async def test_a_plan_change_that_would_price_the_month_beyond_the_bound_is_refused(
    kernel: Kernel, clock: Clock
) -> None:
    """Usage within the bound on starter would come to more than an invoice may on a plan
    that prices it higher: the move is refused before anything is written, preview and
    confirmation alike, and the org stays where it was."""
    await paying(kernel, "org-1")
    # On starter, 4 x 10^12 runs come to 999,999,999,999.00; at 0.30 a run, to more.
    starter = await kernel.plans.get("starter")
    dearer = replace(
        starter,
        slug="dearer",
        name="Dearer",
        version=1,
        monthly_price=starter.monthly_price + 1,
        metrics={
            **starter.metrics,
            "playbook_runs": replace(
                starter.metrics["playbook_runs"], overage_unit_price=Decimal("0.30")
            ),
        },
    )
    await kernel.plans.create(dearer)
    for n in range(4):
        await kernel.usage.record("org-1", "playbook_runs", RUNS, idempotency_key=f"runs-{n}")
    clock.now = APRIL.start + timedelta(days=1)
    for attempt in (kernel.plan_changes.preview, kernel.plan_changes.change):
        with pytest.raises(AmountOutOfBounds, match="org-1 cannot move to dearer now"):
            await attempt("org-1", "dearer")
    state = await kernel.subscriptions.billing_state("org-1")
    assert state.plan_slug == "starter"


async def test_a_tiered_price_is_judged_by_its_tiers_as_the_month_is_written(
    kernel: Kernel,
) -> None:
    """On a graduated price whose first 10 tokens beyond are free and the next cost the
    most a unit price may be, the 11th token would take the month beyond the bound: refused,
    by its tiers, though the plan's own unit price is 0."""
    tiers = (Tier(10, Decimal(0)), Tier(None, MAX_UNIT_PRICE))
    terms = PlanMetric("tokens", 0, price_model=PriceModel.GRADUATED, tiers=tiers)
    plan = await kernel.plans.create(
        Plan("steep", "Steep", "USD", Decimal("0"), metrics={"tokens": terms})
    )
    await kernel.orgs.create("org-1", plan_slug=plan.slug)
    await kernel.subscriptions.set_status("org-1", BillingStatus.ACTIVE)
    await kernel.usage.record("org-1", "tokens", 10, idempotency_key="free")
    with pytest.raises(AmountOutOfBounds, match=r"would come to 1,000,000,000,000\.00 "):
        await kernel.usage.record("org-1", "tokens", 1, idempotency_key="steep")
    result = await kernel.usage.record_batch([UsageReport("org-1", "tokens", 1, "steep")])
    assert result.count(RecordStatus.REFUSED) == 1
    assert (await kernel.invoices.upcoming("org-1")).total == Decimal("0.00")


async def test_a_metric_priced_per_value_is_judged_by_its_dearest_value_as_it_is_written(
    kernel: Kernel,
) -> None:
    """The metric's own price is 0 and gpt-5's 600,000,000,000 a token: the split is not
    known as usage is written, so a token of any model is judged at gpt-5's price, and the
    second would take the month beyond the bound (the bound never reads less than is billed)."""
    dear = Price(unit_price=Decimal("600000000000"))
    terms = PlanMetric("tokens", 0, dimension=Dimension("model", (ValuePrice("gpt-5", dear),)))
    plan = await kernel.plans.create(
        Plan("per-model", "Per model", "USD", Decimal("0"), metrics={"tokens": terms})
    )
    await kernel.orgs.create("org-1", plan_slug=plan.slug)
    await kernel.subscriptions.set_status("org-1", BillingStatus.ACTIVE)
    gpt5, other = {"model": "gpt-5"}, {"model": "other"}
    await kernel.usage.record("org-1", "tokens", 1, idempotency_key="one", properties=gpt5)
    with pytest.raises(AmountOutOfBounds, match=r"would come to 1,200,000,000,000\.02 "):
        await kernel.usage.record("org-1", "tokens", 1, idempotency_key="two", properties=other)
    assert (await kernel.invoices.upcoming("org-1")).total == Decimal("600000000000.00")
