from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.errors import InvalidInput, OrgNotFound, UnknownMetric
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import Reason
from tests.conftest import Clock, new_id

pytestmark = pytest.mark.anyio


async def starter_org(kernel: Kernel, *, tokens: int, runs: int, members: int) -> str:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    await kernel.usage.record(org_id, "tokens", tokens, idempotency_key="t")
    await kernel.usage.record(org_id, "playbook_runs", runs, idempotency_key="r")
    for n in range(members):
        await kernel.members.add(org_id, f"user-{n}")
    return org_id


async def test_summary_reports_usage_against_limits_at_50_85_and_120_percent(
    kernel: Kernel, clock: object
) -> None:
    # Starter includes 1,000,000 tokens, 200 runs and 3 seats.
    org_id = await starter_org(kernel, tokens=500_000, runs=170, members=4)
    summary = await kernel.summary.summary(org_id)

    assert summary.plan.slug == "starter"
    assert summary.state.status.value == "trial"
    assert summary.trial_days_left == 30
    assert summary.period.contains(summary.generated_at)

    tokens, runs, seats = (summary.metric(k) for k in ("tokens", "playbook_runs", "seats"))
    assert (tokens.used, tokens.limit, tokens.percent_used, tokens.remaining) == (
        500_000,
        1_000_000,
        Decimal("50.0"),
        500_000,
    )
    assert (runs.percent_used, runs.soft_limit_exceeded) == (Decimal("85.0"), False)
    assert (seats.used, seats.limit, seats.percent_used, seats.soft_limit_exceeded) == (
        4,
        3,
        Decimal("133.3"),
        True,
    )
    assert seats.overage_amount == Decimal("15.00")
    assert summary.any_soft_limit_exceeded
    assert summary.estimated_overage == Decimal("15.00")


async def test_overage_is_priced_to_the_cent(kernel: Kernel) -> None:
    org_id = await starter_org(kernel, tokens=1_200_250, runs=203, members=0)
    summary = await kernel.summary.summary(org_id)
    # 200,250 tokens at 0.02 per 1k = 4.005 -> 4.01; 3 runs at 0.25 = 0.75.
    assert summary.metric("tokens").overage_quantity == 200_250
    assert summary.metric("tokens").overage_amount == Decimal("4.01")
    assert summary.metric("playbook_runs").overage_amount == Decimal("0.75")
    assert summary.estimated_overage == Decimal("4.76")
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    same, estimate = await kernel.invoices.estimate(org_id)
    assert same.estimated_overage == Decimal("4.76")
    # Active since 15 May noon: the fee for the rest of May, 4.76 of overage, one figure.
    assert estimate.total == (await kernel.invoices.upcoming(org_id)).total
    assert estimate.total == Decimal("4.76") + Decimal("26.08")  # 49.00 x 16.5 / 31
    assert estimate.notes == (
        "the subscription changed this month (its plan or status): its fees are prorated to "
        "the second",
    )  # from trial to active


async def test_limit_overrides_replace_the_plan_limit_per_org(kernel: Kernel) -> None:
    org_id = await starter_org(kernel, tokens=1_500_000, runs=0, members=0)
    await kernel.quota.set_override(org_id, "tokens", 3_000_000)
    tokens = (await kernel.summary.summary(org_id)).metric("tokens")
    assert (tokens.limit, tokens.percent_used, tokens.soft_limit_exceeded) == (
        3_000_000,
        Decimal("50.0"),
        False,
    )
    await kernel.quota.set_override(org_id, "tokens", None)
    tokens = (await kernel.summary.summary(org_id)).metric("tokens")
    assert (tokens.limit, tokens.percent_used, tokens.overage_amount) == (
        None,
        None,
        Decimal("0.00"),
    )
    await kernel.quota.clear_override(org_id, "tokens")
    assert (await kernel.summary.summary(org_id)).metric("tokens").limit == 1_000_000
    with pytest.raises(UnknownMetric, match="unknown metric"):
        await kernel.quota.set_override(org_id, "gpu_hours", 5)


async def test_quota_check_is_soft_and_reports_what_the_request_would_do(
    kernel: Kernel,
) -> None:
    org_id = await starter_org(kernel, tokens=999_000, runs=200, members=2)
    fits = await kernel.quota.check(org_id, "tokens", 1_000)
    assert (fits.used, fits.limit, fits.remaining, fits.would_exceed) == (
        999_000,
        1_000_000,
        1_000,
        False,
    )
    crosses = await kernel.quota.check(org_id, "tokens", 1_001)
    assert (crosses.allowed, crosses.would_exceed, crosses.enforcement) == (
        True,
        True,
        Enforcement.SOFT,
    )
    runs = await kernel.quota.check(org_id, "playbook_runs")
    assert (runs.used, runs.soft_limit_exceeded, runs.would_exceed, runs.allowed) == (
        200,
        False,
        True,
        True,
    )
    seats = await kernel.quota.check(org_id, "seats", 1)
    assert (seats.used, seats.remaining, seats.would_exceed) == (2, 1, False)


async def test_a_decision_says_why_and_in_plain_words_with_the_orgs_and_plans_names(
    kernel: Kernel,
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, name="Acme", plan_slug="growth")
    await kernel.usage.record(org_id, "tokens", 1_250_000, idempotency_key="t")
    decision = await kernel.quota.check(org_id, "tokens", 10)
    assert decision.reason is Reason.WITHIN_LIMIT
    assert decision.message == (
        "Acme has used 1,250,000 of the 5,000,000 tokens included in Growth this month."
    )
    assert decision.resets_at == datetime(2026, 6, 1, tzinfo=UTC)  # the clock is in May
    beyond = await kernel.quota.check(org_id, "tokens", 4_000_000)
    assert (beyond.allowed, beyond.reason) == (True, Reason.SOFT_LIMIT_EXCEEDED)


async def test_quota_check_refuses_bad_input(kernel: Kernel) -> None:
    org_id = await starter_org(kernel, tokens=1, runs=1, members=0)
    with pytest.raises(UnknownMetric, match="unknown metric"):
        await kernel.quota.check(org_id, "gpu_hours", 1)
    with pytest.raises(InvalidInput, match="negative"):
        await kernel.quota.check(org_id, "tokens", -1)
    with pytest.raises(OrgNotFound):
        await kernel.quota.check(new_id(), "tokens", 1)


async def test_the_dashboard_has_daily_usage_and_previous_months(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    start = clock.now  # 15 May 2026, 12:00 UTC
    await kernel.usage.record(
        org_id, "tokens", 100, idempotency_key="a", occurred_at=start - timedelta(days=3)
    )
    await kernel.usage.record(
        org_id, "tokens", 50, idempotency_key="b", occurred_at=start - timedelta(days=3, hours=1)
    )
    await kernel.usage.record(org_id, "tokens", 7, idempotency_key="c")
    await kernel.usage.record(
        org_id, "playbook_runs", 2, idempotency_key="d", occurred_at=start - timedelta(days=20)
    )  # April
    dashboard = await kernel.summary.dashboard(org_id, include_plans=True)
    tokens = dict(dashboard.daily["tokens"])
    assert len(tokens) == 15  # 1 to 15 May
    assert (tokens[date(2026, 5, 12)], tokens[date(2026, 5, 15)]) == (150, 7)
    assert sum(tokens.values()) == 157
    assert "seats" not in dashboard.daily
    # Created in May, but with usage dated in April: the history starts there.
    assert [month.key for month, _ in dashboard.history] == [date(2026, 4, 1)]
    assert dashboard.history[-1][1]["playbook_runs"] == 2
    seeded = [plan.slug for plan in dashboard.plans if not plan.slug.startswith("plan-")]
    # Offered plans only (internal-dev is private); other tests' plans are theirs.
    assert seeded[:2] == ["starter", "growth"]
    assert (await kernel.summary.dashboard(org_id)).plans == ()

    # An org older than the page's six months: all six of them.
    veteran = new_id()
    clock.advance(days=-400)
    await kernel.orgs.create(veteran, plan_slug="starter")
    clock.advance(days=400)
    history = (await kernel.summary.dashboard(veteran)).history
    assert [month.key for month, _ in history] == [
        date(2025, 11, 1),
        date(2025, 12, 1),
        date(2026, 1, 1),
        date(2026, 2, 1),
        date(2026, 3, 1),
        date(2026, 4, 1),
    ]


async def test_a_month_invoiced_reads_as_its_invoice_with_the_plan_that_priced_it(
    kernel: Kernel, clock: Clock
) -> None:
    org_id = await starter_org(kernel, tokens=1_500_000, runs=0, members=0)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    may = BillingPeriod.containing(clock())
    clock.advance(days=20)  # June, after May closed
    invoice = await kernel.invoices.close(org_id, may)
    assert invoice is not None
    await kernel.subscriptions.set_plan(org_id, "growth")  # in June: May keeps Starter
    summary, estimate = await kernel.invoices.estimate(org_id, may)
    assert (summary.plan.slug, estimate.total, estimate.invoice) == (
        "starter",
        invoice.total,
        invoice,
    )
    assert estimate.notes == (f"invoiced as {invoice.number}",)
    assert summary.metric("tokens").overage_amount == Decimal("10.00")  # by Starter's price
    april = may.previous()
    _, before = await kernel.invoices.estimate(org_id, april)
    assert before.invoice is None
    assert before.notes == (
        f"{april.label} is not invoiced: priced by the org's plan as it is now",
    )
    _, ahead = await kernel.invoices.estimate(org_id, may.next().next())
    assert ahead.notes[0].endswith("has not started: priced by the org's plan as it is now")
