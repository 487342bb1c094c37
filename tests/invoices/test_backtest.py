"""Backtesting a plan, on both databases: the current terms reproduce every invoice of a
closed month to the cent; a draft's differences worked by hand; an org's own limit kept;
nothing written."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.errors import InvalidInput, PeriodNotClosed, PlanNotFound
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import PriceModel, Tier
from billing_kernel.quota.rules import LimitOverride
from tests.conftest import Clock, make_kernel, new_id, row_counts, save_plan
from tests.web import Api

pytestmark = pytest.mark.anyio

APRIL = BillingPeriod.parse("2026-04")


async def april_invoiced(
    kernel: Kernel, database: Database, clock: Clock
) -> tuple[Plan, dict[str, str]]:
    """Three orgs on a plan of their own (9.99 a month, 500 tokens included, 0.50 per 1,000
    beyond), one with its own limit of 100,000, and one on starter, invoiced for April."""
    clock.now = APRIL.start
    plan = await save_plan(database, clock())
    orgs = {name: new_id(name) for name in ("light", "heavy", "own", "other")}
    for name, org_id in orgs.items():
        await kernel.orgs.create(org_id, plan_slug="starter" if name == "other" else plan.slug)
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    await kernel.quota.set_override(
        orgs["own"], "tokens", LimitOverride(included_quantity=100_000, sets_included=True)
    )
    clock.advance(days=3)
    for name, tokens in (("light", 1_500), ("heavy", 300_500), ("own", 100_500), ("other", 10)):
        await kernel.usage.record(orgs[name], "tokens", tokens, idempotency_key="april")
    clock.now = APRIL.end + timedelta(days=1)
    for org_id in orgs.values():
        assert await kernel.invoices.close(org_id, APRIL) is not None
    return plan, orgs


async def test_the_current_terms_reproduce_every_invoice_and_a_draft_prices_the_month(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    plan, orgs = await april_invoiced(kernel, database, clock)
    # A limit of its own given since: April's invoice followed the plan, and so does the draft.
    await kernel.quota.set_override(
        orgs["light"], "tokens", LimitOverride(included_quantity=10**6, sets_included=True)
    )
    before = await row_counts(database)

    same = await kernel.invoices.backtest(plan, APRIL)
    assert [row.org_id for row in same.rows] == sorted(orgs[n] for n in ("light", "heavy", "own"))
    for row in same.rows:
        got = await kernel.invoices.by_number(row.invoice_number)
        assert row.difference == 0
        assert [line.amount for line in row.draft.lines] == [line.amount for line in got.lines]
        assert [line.formula for line in row.draft.lines] == [line.formula for line in got.lines]
    assert (same.invoiced, same.drafted) == (Decimal("180.72"), Decimal("180.72"))

    draft = replace(
        plan,
        monthly_price=Decimal("19.00"),
        metrics={"tokens": PlanMetric("tokens", 1_000, Decimal("0.40"), 1_000)},
    )
    priced = await kernel.invoices.backtest(draft, APRIL)
    by_org = {row.org_id: row for row in priced.rows}
    # light: 1,500 tokens, 1,000 over at 0.50/1k then 500 over at 0.40/1k
    assert (by_org[orgs["light"]].invoiced, by_org[orgs["light"]].draft.total) == (
        Decimal("10.49"),
        Decimal("19.20"),
    )
    # heavy: 300,000 over → 150.00; with the draft 299,500 over → 119.80
    assert (by_org[orgs["heavy"]].invoiced, by_org[orgs["heavy"]].draft.total) == (
        Decimal("159.99"),
        Decimal("138.80"),
    )
    # own: its own 100,000 stays; 500 over → 0.25, with the draft 0.20
    assert (by_org[orgs["own"]].invoiced, by_org[orgs["own"]].draft.total) == (
        Decimal("10.24"),
        Decimal("19.20"),
    )
    assert by_org[orgs["heavy"]].difference == Decimal("-21.19")
    assert (priced.invoiced, priced.drafted, priced.difference) == (
        Decimal("180.72"),
        Decimal("177.20"),
        Decimal("-3.52"),
    )
    [fee, overage] = by_org[orgs["light"]].draft.lines
    assert (fee.amount, overage.formula) == (
        Decimal("19.00"),
        "(1,500 - 1,000) x 0.40 / 1,000 = 0.2 → 0.20",
    )

    chosen = await kernel.invoices.backtest(draft, APRIL, [orgs["other"], orgs["light"]])
    assert {row.org_id: row.difference for row in chosen.rows} == {
        orgs["light"]: Decimal("8.71"),
        orgs["other"]: Decimal("0.00"),  # on starter all month: the draft is not its plan
    }
    assert await row_counts(database) == before  # nothing written
    assert await kernel.invoices.verify() == []


async def test_a_tiered_draft_is_priced_by_its_tiers_against_a_per_unit_month(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    """The same terms, but the tokens beyond the first 100,000 over at half the price and a
    1.00 fee: only the heavy org's month changes."""
    plan, orgs = await april_invoiced(kernel, database, clock)
    tiers = (Tier(100_000, Decimal("0.50")), Tier(None, Decimal("0.25"), Decimal("1.00")))
    tokens = PlanMetric(
        "tokens", 500, overage_unit_size=1_000, price_model=PriceModel.GRADUATED, tiers=tiers
    )
    priced = await kernel.invoices.backtest(replace(plan, metrics={"tokens": tokens}), APRIL)
    by_org = {row.org_id: row for row in priced.rows}
    assert {name: by_org[orgs[name]].difference for name in ("light", "heavy", "own")} == {
        "light": Decimal("0.00"),  # 1,000 over: all in the first tier, as before
        "heavy": Decimal("-49.00"),  # 159.99 → 9.99 + 50.00 + 50.00 + 1.00
        "own": Decimal("0.00"),  # 500 over its own 100,000
    }
    [_, heavy] = by_org[orgs["heavy"]].draft.lines
    assert heavy.formula == (
        "(300,500 - 500) = 300,000: 100,000 x 0.50 / 1,000 + 200,000 x 0.25 / 1,000 + 1.00"
        " = 101 → 101.00"
    )
    assert (priced.invoiced, priced.drafted) == (Decimal("180.72"), Decimal("131.72"))


async def test_a_backtest_is_refused_before_the_month_closes_and_for_a_wrong_draft(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    plan, _ = await april_invoiced(kernel, database, clock)
    may = APRIL.next()
    with pytest.raises(PeriodNotClosed, match="2026-05 closes at 2026-06-02 00:00"):
        await kernel.invoices.backtest(plan, may)
    with pytest.raises(InvalidInput) as currency:
        await kernel.invoices.backtest(replace(plan, currency="EUR"), APRIL)
    assert currency.value.details["field"] == "currency"
    bad = replace(plan, metrics={"tokens": PlanMetric("tokens", -1)})
    with pytest.raises(InvalidInput) as terms:
        await kernel.invoices.backtest(bad, APRIL)
    assert terms.value.details["field"] == "included_quantity"
    with pytest.raises(PlanNotFound):
        await kernel.invoices.backtest(replace(plan, slug=new_id("plan")), APRIL)
    assert (await kernel.invoices.backtest(plan, BillingPeriod.parse("2026-01"))).rows == ()


async def test_over_http_a_deployment_admin_backtests_a_draft_and_bad_requests_say_why(
    api: Api, clock: Clock
) -> None:
    plan, orgs = await april_invoiced(make_kernel(api.database, clock), api.database, clock)
    url = f"/api/v1/billing/plans/{plan.slug}/backtest"
    draft = {
        "name": "Custom",
        "currency": "USD",
        "monthly_price": "19.00",
        "metrics": [
            {
                "metric": "tokens",
                "included_quantity": 1000,
                "overage_unit_price": "0.40",
                "overage_unit_size": 1000,
            }
        ],
    }
    admin = await api.key(Scope.BILLING_ADMIN)
    answer = await api.client.post(url, json={"period": "2026-04", "plan": draft}, headers=admin)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["plan_slug"], body["period"], body["currency"]) == (plan.slug, "2026-04", "USD")
    assert (body["invoiced"], body["draft"], body["difference"]) == ("180.72", "177.20", "-3.52")
    light = next(row for row in body["orgs"] if row["org_id"] == orgs["light"])
    assert {k: light[k] for k in ("invoiced", "draft", "difference", "plan_version")} == {
        "invoiced": "10.49",
        "draft": "19.20",
        "difference": "8.71",
        "plan_version": 1,
    }
    assert [line["amount"] for line in light["lines"]] == ["19.00", "0.20"]
    chosen = await api.client.post(
        url, json={"period": "2026-04", "plan": draft, "org_ids": [orgs["own"]]}, headers=admin
    )
    assert [row["difference"] for row in chosen.json()["orgs"]] == ["8.96"]

    refusals = [
        ({"period": "2026-13", "plan": draft}, admin, 422, "period"),
        ({"period": "2099-04", "plan": draft}, admin, 409, "period_not_closed"),
        ({"period": "2026-04", "plan": {**draft, "currency": "EUR"}}, admin, 422, "currency"),
        ({"period": "2026-04", "plan": draft, "surprise": 1}, admin, 422, "surprise"),
    ]
    org_key = await api.key(Scope.BILLING_ADMIN, org_id=orgs["light"])
    refusals.append(({"period": "2026-04", "plan": draft}, org_key, 403, "every org"))
    for body_in, headers, status, words in refusals:
        refused = await api.client.post(url, json=body_in, headers=headers)
        assert (refused.status_code, words in refused.text) == (status, True), refused.text
    unknown = await api.client.post(
        "/api/v1/billing/plans/no-such-plan/backtest",
        json={"period": "2026-04", "plan": draft},
        headers=admin,
    )
    assert unknown.status_code == 404
