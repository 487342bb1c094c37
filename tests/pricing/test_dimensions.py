"""Prices per dimension on both databases: a plan priced per model over HTTP, stored and read
back whole, refused naming what is wrong; a month billed a line per model, shown split in
the summary, adjusted per model for late usage, reproduced by `invoices verify` and by a
backtest, and a draft priced per model backtested against a month priced as one."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.db.database import Database
from billing_kernel.invoices.rules import LineKind
from billing_kernel.kernel import Kernel
from billing_kernel.orgs.rules import BillingStatus
from billing_kernel.plans.rules import Plan, PlanMetric
from billing_kernel.pricing.rules import Dimension, Price, PriceModel, Tier, ValuePrice
from tests.conftest import Clock, new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

APRIL = BillingPeriod.parse("2026-04")
D = Decimal
MINI = Price(
    PriceModel.GRADUATED,
    unit_size=1_000,
    tiers=(Tier(100_000, D("0.02")), Tier(None, D("0.01"), D("1.00"))),
)
PER_MODEL = PlanMetric(
    "tokens",
    100_000,
    D("0.05"),
    1_000,
    dimension=Dimension(
        "model",
        (
            ValuePrice("gpt-5", Price(unit_price=D("0.10"), unit_size=1_000)),
            ValuePrice("gpt-5-mini", MINI),
        ),
    ),
)


def per_model_body(slug: str) -> dict[str, object]:
    return {
        "slug": slug,
        "name": "Per model",
        "currency": "USD",
        "monthly_price": "10.00",
        "public": False,  # the other tests' orgs are never offered it
        "metrics": [
            {
                "metric": "tokens",
                "included_quantity": 100_000,
                "overage_unit_price": "0.05",
                "overage_unit_size": 1_000,
                "dimension": {
                    "property": "model",
                    "prices": [
                        {"value": "gpt-5", "overage_unit_price": "0.10", "overage_unit_size": 1000},
                        {
                            "value": "gpt-5-mini",
                            "price_model": "graduated",
                            "overage_unit_size": 1000,
                            "tiers": [
                                {"up_to": 100_000, "unit_price": "0.02"},
                                {"up_to": None, "unit_price": "0.01", "flat_fee": "1.00"},
                            ],
                        },
                    ],
                },
            }
        ],
    }


async def test_a_plan_priced_per_model_is_read_back_whole_and_refused_naming_what_is_wrong(
    api: Api, database: Database, kernel: Kernel
) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    plans = "/api/v1/billing/plans"
    slug = new_id("per-model")
    created = await api.client.post(plans, json=per_model_body(slug), headers=admin)
    assert created.status_code == 201, created.text
    [tokens] = created.json()["metrics"]
    assert tokens["dimension"] == {
        "property": "model",
        "prices": [
            {
                "value": "gpt-5",
                "price_model": "per_unit",
                "overage_unit_price": "0.10",
                "overage_unit_size": 1000,
                "tiers": [],
            },
            {
                "value": "gpt-5-mini",
                "price_model": "graduated",
                "overage_unit_price": "0.00",
                "overage_unit_size": 1000,
                "tiers": [
                    {"up_to": 100_000, "unit_price": "0.02", "flat_fee": "0.00"},
                    {"up_to": None, "unit_price": "0.01", "flat_fee": "1.00"},
                ],
            },
        ],
    }
    assert (await api.client.get(f"{plans}/{slug}", headers=admin)).json() == created.json()
    assert (await kernel.plans.get(slug)).metrics["tokens"] == PER_MODEL

    before = await row_counts(database)
    twice = per_model_body(new_id("per-model"))
    dimension = twice["metrics"][0]["dimension"]  # type: ignore[index]
    dimension["prices"][1]["value"] = "gpt-5"
    on_seats = per_model_body(new_id("per-model"))
    on_seats["metrics"][0]["metric"] = "seats"  # type: ignore[index]
    no_tiers = per_model_body(new_id("per-model"))
    no_tiers["metrics"][0]["dimension"]["prices"][1]["tiers"] = None  # type: ignore[index]
    for body, field, words in (
        (twice, "dimension.prices[1].value", "'gpt-5' is listed twice"),
        (on_seats, "dimension", "aggregated by seats: only a sum or a count"),
        (no_tiers, "dimension.prices[1].tiers", "a graduated price has 1 to 20 tiers"),
    ):
        refused = await api.client.post(plans, json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["location"] == field
        assert words in refused.json()["detail"]
    bad_property = per_model_body(new_id("per-model"))
    bad_property["metrics"][0]["dimension"]["property"] = "a b"  # type: ignore[index]
    refused = await api.client.post(plans, json=bad_property, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["location"].endswith("dimension.property")
    assert await row_counts(database) == before


async def record(kernel: Kernel, org_id: str, model: str | None, tokens: int, key: str) -> None:
    await kernel.usage.record(
        org_id,
        "tokens",
        tokens,
        idempotency_key=key,
        properties={} if model is None else {"model": model},
    )


async def test_a_month_priced_per_model_bills_a_line_per_model_and_verifies(
    kernel: Kernel, clock: Clock
) -> None:
    clock.now = APRIL.start
    plan = await kernel.plans.create(
        Plan(
            new_id("per-model"),
            "Per model",
            "USD",
            D("10.00"),
            metrics={"tokens": PER_MODEL},
            is_public=False,
        )
    )
    org_id = new_id("per-model")
    await kernel.orgs.create(org_id, plan_slug=plan.slug)
    await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
    clock.advance(days=3)
    await record(kernel, org_id, "gpt-5", 60_000, "a")
    await record(kernel, org_id, "gpt-5-mini", 200_000, "b")
    await record(kernel, org_id, "gpt-5-mini", 50_000, "c")
    await record(kernel, org_id, "llama", 40_000, "d")
    await record(kernel, org_id, None, 10_000, "e")

    [line] = (await kernel.summary.summary(org_id)).usage[:1]
    assert line.used == 360_000
    assert [(s.value, s.used, s.included, s.over) for s in line.shares] == [
        ("gpt-5", 60_000, 60_000, 0),
        ("gpt-5-mini", 250_000, 40_000, 210_000),
        (None, 50_000, 0, 50_000),
    ]
    assert line.overage_amount == D("6.60")  # 4.10 + 2.50

    clock.now = APRIL.end + timedelta(days=1)
    invoice = await kernel.invoices.close(org_id, APRIL)
    assert invoice is not None
    assert [(x.kind, x.dimension_value, x.quantity, x.amount) for x in invoice.lines] == [
        ("base_fee", None, 2_592_000, D("10.00")),
        ("overage", "gpt-5-mini", 210_000, D("4.10")),
        ("overage", None, 50_000, D("2.50")),
    ]
    assert invoice.total == D("16.60")
    [usage] = [u for u in invoice.usage if u.metric == "tokens"]
    assert (usage.quantity, usage.split) == (360_000, {"gpt-5": 60_000, "gpt-5-mini": 250_000})

    # gpt-5 tokens arriving late take included units from gpt-5-mini: its line is repriced.
    clock.advance(hours=1)
    await kernel.usage.record(
        org_id,
        "tokens",
        20_000,
        idempotency_key="late",
        occurred_at=APRIL.end - timedelta(hours=1),
        properties={"model": "gpt-5"},
    )
    clock.now = APRIL.next().end + timedelta(days=1)
    may = await kernel.invoices.close(org_id, APRIL.next())
    assert may is not None
    [adjustment] = [x for x in may.lines if x.kind == LineKind.ADJUSTMENT]
    assert (adjustment.dimension_value, adjustment.quantity, adjustment.amount) == (
        "gpt-5-mini",
        20_000,
        D("0.20"),
    )
    [late] = [u for u in may.usage if u.period_start == APRIL.key]
    assert (late.quantity, late.split) == (20_000, {"gpt-5": 20_000})
    assert await kernel.invoices.verify() == []

    # A backtest of the plan as it is reproduces April; priced as one, it bills otherwise.
    same = await kernel.invoices.backtest(plan, APRIL, [org_id])
    [row] = same.rows
    assert (row.invoiced, row.draft.total, row.difference) == (D("16.60"), D("16.60"), 0)
    as_one = replace(plan, metrics={"tokens": replace(PER_MODEL, dimension=None)})
    [row] = (await kernel.invoices.backtest(as_one, APRIL, [org_id])).rows
    assert row.draft.total == D("23.00")  # 260,000 over at 0.05 per 1,000


async def test_the_summary_splits_a_metric_priced_per_model_as_its_invoice_lines_will(
    api: Api,
) -> None:
    org_id = new_id("per-model")
    headers = await api.member(org_id, plan="growth")  # the demo's price per model
    await record(api.kernel, org_id, "gpt-5", 1_000_000, "a")
    await record(api.kernel, org_id, "gpt-5-mini", 4_100_000, "b")
    await record(api.kernel, org_id, "llama", 200_000, "c")
    answer = await api.client.get("/api/v1/billing/org/summary", headers=headers)
    assert answer.status_code == 200, answer.text
    tokens = next(m for m in answer.json()["usage"] if m["metric"] == "tokens")
    assert (tokens["dimension"], tokens["overage_quantity"], tokens["overage_amount"]) == (
        "model",
        300_000,
        "3.50",
    )
    assert tokens["split"] == [
        {
            "value": "gpt-5",
            "used": 1_000_000,
            "included": 1_000_000,
            "overage_quantity": 0,
            "overage_amount": "0.00",
        },
        {
            "value": "gpt-5-mini",
            "used": 4_100_000,
            "included": 4_000_000,
            "overage_quantity": 100_000,
            "overage_amount": "0.50",
        },
        {
            "value": None,
            "used": 200_000,
            "included": 0,
            "overage_quantity": 200_000,
            "overage_amount": "3.00",
        },
    ]
    runs = next(m for m in answer.json()["usage"] if m["metric"] == "playbook_runs")
    assert (runs["dimension"], runs["split"]) == (None, [])
