"""Plans priced by each model, on both databases: a tiered plan over HTTP, stored and read
back whole, refused naming the tier that is wrong; months closed on graduated, volume and
package prices, late usage adjusted by the tiers, the summary's overage, and `invoices
verify` recomputing every line."""

from __future__ import annotations

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
from billing_kernel.pricing.rules import PriceModel, Tier
from tests.conftest import Clock, new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

APRIL = BillingPeriod.parse("2026-04")
D = Decimal
TIERS = (Tier(100_000, D("0.02")), Tier(None, D("0.01"), D("5.00")))


def tiered_body(slug: str) -> dict[str, object]:
    return {
        "slug": slug,
        "name": "Tiered",
        "currency": "USD",
        "monthly_price": "10.00",
        "public": False,  # private: the other tests' orgs are never offered it
        "metrics": [
            {
                "metric": "tokens",
                "included_quantity": 1_000,
                "price_model": "graduated",
                "overage_unit_size": 1_000,
                "tiers": [
                    {"up_to": 100_000, "unit_price": "0.02"},
                    {"up_to": None, "unit_price": "0.01", "flat_fee": "5.00"},
                ],
            },
            {
                "metric": "playbook_runs",
                "included_quantity": 10,
                "price_model": "package",
                "overage_unit_price": "2.50",
                "overage_unit_size": 100,
            },
        ],
    }


async def test_a_tiered_plan_is_offered_read_back_whole_and_refused_naming_its_wrong_tier(
    api: Api, database: Database
) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    plans = "/api/v1/billing/plans"
    slug = new_id("tiered")
    created = await api.client.post(plans, json=tiered_body(slug), headers=admin)
    assert created.status_code == 201, created.text
    tokens, runs = created.json()["metrics"]
    assert tokens["price_model"] == "graduated"
    assert tokens["tiers"] == [
        {"up_to": 100_000, "unit_price": "0.02", "flat_fee": "0.00"},
        {"up_to": None, "unit_price": "0.01", "flat_fee": "5.00"},
    ]
    assert (tokens["overage_unit_price"], tokens["overage_unit_size"]) == ("0.00", 1_000)
    assert (runs["price_model"], runs["overage_unit_price"], runs["tiers"]) == (
        "package",
        "2.50",
        [],
    )
    assert (await api.client.get(f"{plans}/{slug}", headers=admin)).json() == created.json()

    before = await row_counts(database)
    for tiers, field, words in (
        (
            [
                {"up_to": 5, "unit_price": "1"},
                {"up_to": 5, "unit_price": "1"},
                {"up_to": None, "unit_price": "1"},
            ],
            "tiers[1].up_to",
            "above 5 (where the tier before it ends)",
        ),
        ([{"up_to": 5, "unit_price": "1"}], "tiers[0].up_to", "must be null"),
        ([], "tiers", "a graduated price has 1 to 20 tiers"),
    ):
        body = tiered_body(new_id("tiered"))
        body["metrics"][0]["tiers"] = tiers  # type: ignore[index]
        refused = await api.client.post(plans, json=body, headers=admin)
        assert refused.status_code == 422, refused.text
        [error] = refused.json()["errors"]
        assert error["location"] == field
        assert words in refused.json()["detail"]
    per_unit_with_tiers = tiered_body(new_id("tiered"))
    per_unit_with_tiers["metrics"][1]["tiers"] = [{"up_to": None, "unit_price": "1"}]  # type: ignore[index]
    refused = await api.client.post(plans, json=per_unit_with_tiers, headers=admin)
    assert refused.status_code == 422
    assert refused.json()["detail"] == "tiers are for graduated and volume prices, not package"
    assert await row_counts(database) == before


async def test_months_on_each_model_close_to_the_cent_and_verify(
    kernel: Kernel, database: Database, clock: Clock
) -> None:
    clock.now = APRIL.start
    priced = {
        PriceModel.GRADUATED: PlanMetric(
            "tokens", 1_000, overage_unit_size=1_000, price_model=PriceModel.GRADUATED, tiers=TIERS
        ),
        PriceModel.VOLUME: PlanMetric(
            "tokens", 1_000, overage_unit_size=1_000, price_model=PriceModel.VOLUME, tiers=TIERS
        ),
        PriceModel.PACKAGE: PlanMetric(
            "tokens", 1_000, D("4.00"), 50_000, price_model=PriceModel.PACKAGE
        ),
    }
    orgs = {}
    for model, terms in priced.items():
        plan = await kernel.plans.create(
            Plan(
                new_id(model.value),
                model.value,
                "USD",
                D("10.00"),
                metrics={"tokens": terms},
                is_public=False,  # the other tests' orgs are never offered it
            )
        )
        org_id = new_id(model.value)
        await kernel.orgs.create(org_id, plan_slug=plan.slug)
        await kernel.subscriptions.set_status(org_id, BillingStatus.ACTIVE)
        orgs[model] = org_id
    clock.advance(days=3)
    for org_id in orgs.values():
        await kernel.usage.record(org_id, "tokens", 151_000, idempotency_key="april")
    # 150,000 beyond the 1,000 included.
    overage = {
        model: (await kernel.summary.summary(org_id)).usage[0].overage_amount
        for model, org_id in orgs.items()
    }
    assert overage == {
        PriceModel.GRADUATED: D("7.50"),  # 100,000 x 0.02 / 1,000 + 50,000 x 0.01 / 1,000 + 5.00
        PriceModel.VOLUME: D("6.50"),  # 150,000 x 0.01 / 1,000 + 5.00
        PriceModel.PACKAGE: D("12.00"),  # 3 packages of 50,000 at 4.00
    }

    clock.now = APRIL.end + timedelta(days=1)
    formulas = {}
    for model, org_id in orgs.items():
        invoice = await kernel.invoices.close(org_id, APRIL)
        assert invoice is not None
        [fee, line] = invoice.lines
        assert (fee.amount, line.amount, invoice.total) == (
            D("10.00"),
            overage[model],
            D("10.00") + overage[model],
        )
        formulas[model] = line.formula
    assert formulas == {
        PriceModel.GRADUATED: "(151,000 - 1,000) = 150,000: 100,000 x 0.02 / 1,000"
        " + 50,000 x 0.01 / 1,000 + 5.00 = 7.5 → 7.50",
        PriceModel.VOLUME: "(151,000 - 1,000) = 150,000: 150,000 x 0.01 / 1,000 + 5.00"
        " = 6.5 → 6.50",
        PriceModel.PACKAGE: "(151,000 - 1,000) = 150,000: ⌈150,000 / 50,000⌉ = 3 x 4.00"
        " = 12 → 12.00",
    }

    # April's late events, priced by the tiers on the whole month, on May's invoice.
    clock.advance(hours=1)
    for org_id in orgs.values():
        await kernel.usage.record(
            org_id,
            "tokens",
            1_000,
            idempotency_key="late",
            occurred_at=APRIL.end - timedelta(hours=1),
        )
    clock.now = APRIL.next().end + timedelta(days=1)
    adjusted = {}
    for model, org_id in orgs.items():
        may = await kernel.invoices.close(org_id, APRIL.next())
        assert may is not None
        adjusted[model] = [line.amount for line in may.lines if line.kind == LineKind.ADJUSTMENT]
    assert adjusted == {
        PriceModel.GRADUATED: [D("0.01")],  # 7.51 less 7.50
        PriceModel.VOLUME: [D("0.01")],  # 6.51 less 6.50
        PriceModel.PACKAGE: [D("4.00")],  # a fourth package
    }
    assert await kernel.invoices.verify() == []
