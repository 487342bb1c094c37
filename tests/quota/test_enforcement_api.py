"""Policies, an org's own terms and its billing status over HTTP, and refusals as answers."""

from datetime import UTC, datetime

import pytest

from billing_kernel.auth.rules import Scope
from tests.conftest import new_id, row_counts, save_plan
from tests.web import Api

pytestmark = pytest.mark.anyio


async def test_a_plan_policy_is_set_for_every_org_and_shown_with_the_plans(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    plan = await save_plan(api.database, datetime.now(UTC))
    url = f"/api/v1/billing/plans/{plan.slug}/metrics/tokens/policy"
    body = {"mode": "hard", "grace_percent": 10, "grace_period_hours": 72}
    answer = await api.client.put(url, json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    [terms] = answer.json()["metrics"]
    assert terms["policy"] == body
    listed = (await api.client.get("/api/v1/billing/plans", headers=admin)).json()["plans"]
    [shown] = [p for p in listed if p["slug"] == plan.slug]
    assert shown["metrics"][0]["policy"] == body
    starter = next(p for p in listed if p["slug"] == "starter")
    assert {t["policy"]["mode"] for t in starter["metrics"]} == {"soft"}


async def test_plan_policy_refusals_name_what_is_wrong_and_write_nothing(api: Api) -> None:
    plan = await save_plan(api.database, datetime.now(UTC))
    url = f"/api/v1/billing/plans/{plan.slug}/metrics/tokens/policy"
    one_org = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    admin = await api.key(Scope.BILLING_ADMIN)
    before = await row_counts(api.database)
    restricted = await api.client.put(url, json={"mode": "hard"}, headers=one_org)
    assert restricted.status_code == 403
    assert "every org" in restricted.json()["detail"]
    unnamed = await api.client.put(
        f"/api/v1/billing/plans/{plan.slug}/metrics/seats/policy",
        json={"mode": "hard"},
        headers=admin,
    )
    assert (unnamed.status_code, unnamed.json()["code"]) == (404, "metric_not_in_plan")
    unknown = await api.client.put(
        f"/api/v1/billing/plans/{new_id('plan')}/metrics/tokens/policy",
        json={"mode": "hard"},
        headers=admin,
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "plan_not_found")
    for bad, field in (
        ({"mode": "strict"}, "mode"),
        ({"mode": "hard", "grace_percent": 1001}, "grace_percent"),
        ({"mode": "hard", "grace_period_hours": 0}, "grace_period_hours"),
        ({"mode": "hard", "grace_period_hours": 1.5}, "grace_period_hours"),
    ):
        answer = await api.client.put(url, json=bad, headers=admin)
        assert answer.status_code == 422, bad
        assert field in answer.text
    assert await row_counts(api.database) == before
    assert (await api.kernel.plans.get(plan.slug)).metrics["tokens"].policy.mode.value == "soft"


async def test_an_orgs_own_terms_are_put_part_by_part_read_and_dropped(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.kernel.orgs.create(org_id, plan_slug="starter")
    url = f"/api/v1/orgs/{org_id}/limits/tokens"
    hard = await api.client.put(url, json={"mode": "hard", "grace_percent": 10}, headers=admin)
    assert hard.status_code == 200, hard.text
    assert hard.json() == {
        "metric": "tokens",
        "included_quantity": 1_000_000,  # the plan's
        "policy": {"mode": "hard", "grace_percent": 10, "grace_period_hours": None},
        "overridden": ["mode", "grace_percent"],
    }
    unlimited = await api.client.put(url, json={"included_quantity": None}, headers=admin)
    assert unlimited.json()["included_quantity"] is None
    assert unlimited.json()["policy"]["mode"] == "soft"  # the whole override was replaced
    assert unlimited.json()["overridden"] == ["included_quantity"]
    listed = (await api.client.get(f"/api/v1/orgs/{org_id}/limits", headers=admin)).json()
    assert [t["metric"] for t in listed["limits"]] == ["tokens", "playbook_runs", "seats"]
    assert listed["limits"][0] == unlimited.json()
    dropped = await api.client.delete(url, headers=admin)
    assert dropped.status_code == 200
    assert (dropped.json()["included_quantity"], dropped.json()["overridden"]) == (1_000_000, [])
    again = await api.client.delete(url, headers=admin)
    assert again.json() == dropped.json()


async def test_org_terms_refusals(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    other = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    checker = await api.key(Scope.QUOTA_CHECK)
    url = f"/api/v1/orgs/{org_id}/limits/tokens"
    before = await row_counts(api.database)
    assert (await api.client.put(url, json={"mode": "hard"}, headers=other)).status_code == 403
    assert (await api.client.put(url, json={"mode": "hard"}, headers=checker)).status_code == 403
    gone = await api.client.put(f"/api/v1/orgs/{new_id()}/limits/tokens", json={}, headers=admin)
    assert (gone.status_code, gone.json()["code"]) == (404, "org_not_found")
    metric = await api.client.put(f"/api/v1/orgs/{org_id}/limits/gpu", json={}, headers=admin)
    assert (metric.status_code, metric.json()["code"]) == (404, "unknown_metric")
    negative = await api.client.put(url, json={"included_quantity": -1}, headers=admin)
    assert negative.status_code == 422
    assert "included_quantity" in negative.text
    extra = await api.client.put(url, json={"limit": 5}, headers=admin)
    assert extra.status_code == 422
    assert await row_counts(api.database) == before


async def test_a_refusal_is_an_answer_with_its_reason_message_and_upgrade(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"name": "Acme", "plan_slug": "starter"}, headers=admin
    )
    await api.client.put(
        f"/api/v1/orgs/{org_id}/limits/playbook_runs", json={"mode": "hard"}, headers=admin
    )
    await api.kernel.usage.record(org_id, "playbook_runs", 200, idempotency_key="runs")
    answer = await api.client.post(
        "/api/v1/billing/org/check",
        json={"metric": "playbook_runs"},
        headers={**admin, "X-Org-Id": org_id},
    )
    assert answer.status_code == 200
    decision = answer.json()
    assert (decision["allowed"], decision["reason"], decision["remaining"]) == (
        False,
        "limit_reached",
        0,
    )
    assert decision["upgrade"] == {
        "plan_slug": "growth",
        "name": "Growth",
        "included_quantity": 1000,
    }
    assert decision["message"].startswith("Acme has used all 200 runs included in Starter")
    assert decision["message"].endswith("Growth includes 1,000 runs.")
    assert decision["policy"] == {"mode": "hard", "grace_percent": 0, "grace_period_hours": None}
    assert decision["enforcement"] == "hard"


async def test_an_orgs_status_is_put_with_the_org_and_blocks_its_use(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    created = await api.client.put(f"/api/v1/orgs/{org_id}", json={}, headers=admin)
    since = created.json()["status_since"]
    assert created.json()["status"] == "trial"
    canceled = await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"status": "canceled"}, headers=admin
    )
    assert canceled.json()["status"] == "canceled"
    assert canceled.json()["status_since"] >= since
    listed = await api.client.get("/api/v1/orgs", params={"status": "canceled"}, headers=admin)
    assert org_id in [org["org_id"] for org in listed.json()["data"]]
    answer = await api.client.post(
        "/api/v1/billing/org/check",
        json={"metric": "tokens", "amount": 0},
        headers={**admin, "X-Org-Id": org_id},
    )
    assert (answer.json()["allowed"], answer.json()["reason"]) == (False, "canceled")
    bad = await api.client.put(f"/api/v1/orgs/{org_id}", json={"status": "frozen"}, headers=admin)
    assert bad.status_code == 422
    assert "status" in bad.text


TEAM = {
    "name": "Team",
    "currency": "EUR",
    "monthly_price": "79.50",
    "metrics": [
        {
            "metric": "tokens",
            "included_quantity": 2_000_000,
            "overage_unit_price": "0.015",
            "overage_unit_size": 1000,
        },
        {
            "metric": "playbook_runs",
            "included_quantity": 500,
            "overage_unit_price": "0.10",
            "policy": {"mode": "hard", "grace_percent": 10},
        },
    ],
}


async def test_a_plan_is_created_offered_and_withdrawn(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("team")
    created = await api.client.post(
        "/api/v1/billing/plans", json={"slug": slug, **TEAM}, headers=admin
    )
    assert created.status_code == 201, created.text
    plan = created.json()
    assert (plan["monthly_price"], plan["currency"], plan["is_active"]) == ("79.50", "EUR", True)
    assert [(m["metric"], m["overage_unit_price"]) for m in plan["metrics"]] == [
        ("tokens", "0.015"),
        ("playbook_runs", "0.10"),
    ]
    assert plan["metrics"][1]["policy"] == {
        "mode": "hard",
        "grace_percent": 10,
        "grace_period_hours": None,
    }
    listed = (await api.client.get("/api/v1/billing/plans", headers=admin)).json()["plans"]
    assert slug in {p["slug"] for p in listed}
    again = await api.client.post(
        "/api/v1/billing/plans", json={"slug": slug, **TEAM}, headers=admin
    )
    assert (again.status_code, again.json()["code"]) == (409, "plan_exists")
    withdrawn = await api.client.post(f"/api/v1/billing/plans/{slug}/deactivate", headers=admin)
    assert (withdrawn.status_code, withdrawn.json()["is_active"]) == (200, False)
    listed = (await api.client.get("/api/v1/billing/plans", headers=admin)).json()["plans"]
    assert slug not in {p["slug"] for p in listed}
    default = await api.client.post("/api/v1/billing/plans/internal-dev/deactivate", headers=admin)
    assert (default.status_code, default.json()["code"]) == (409, "plan_is_default")


async def test_plan_creation_refusals_name_what_is_wrong_and_write_nothing(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    one_org = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    before = await row_counts(api.database)
    good = {"slug": new_id("team"), **TEAM}
    restricted = await api.client.post("/api/v1/billing/plans", json=good, headers=one_org)
    assert restricted.status_code == 403
    tokens = TEAM["metrics"][0]  # type: ignore[index]
    for bad, field in (
        ({**good, "monthly_price": 79.5}, "monthly_price"),
        ({**good, "monthly_price": "79.505"}, "monthly_price"),
        ({**good, "monthly_price": "-1"}, "monthly_price"),
        ({**good, "currency": "eur"}, "currency"),
        ({**good, "name": ""}, "name"),
        ({**good, "metrics": [tokens, tokens]}, "metrics"),
        ({**good, "metrics": [{**tokens, "overage_unit_size": 0}]}, "overage_unit_size"),
        (
            {**good, "metrics": [{**tokens, "overage_unit_price": "0.0000001"}]},
            "overage_unit_price",
        ),
        ({**good, "metrics": [{**tokens, "included_quantity": -1}]}, "included_quantity"),
        ({**good, "extra": 1}, "extra"),
    ):
        answer = await api.client.post("/api/v1/billing/plans", json=bad, headers=admin)
        assert answer.status_code == 422, (bad, answer.text)
        assert field in answer.text, bad
    unknown = {**good, "metrics": [{**tokens, "metric": "nope"}]}  # not in the catalogue
    answer = await api.client.post("/api/v1/billing/plans", json=unknown, headers=admin)
    assert (answer.status_code, answer.json()["code"]) == (404, "unknown_metric")
    assert answer.json()["errors"][0]["location"] == "metrics"
    missing = await api.client.post(
        f"/api/v1/billing/plans/{new_id('plan')}/deactivate", headers=admin
    )
    assert missing.status_code == 404
    assert await row_counts(api.database) == before


async def test_a_plan_update_makes_a_version_and_the_orgs_on_it_keep_theirs(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("team")
    url = f"/api/v1/billing/plans/{slug}"
    await api.client.post("/api/v1/billing/plans", json={"slug": slug, **TEAM}, headers=admin)
    try:
        early = new_id()
        await api.client.put(f"/api/v1/orgs/{early}", json={"plan_slug": slug}, headers=admin)
        pricier = {**TEAM, "monthly_price": "89.00"}
        one_org = await api.key(Scope.BILLING_ADMIN, org_id=early)
        assert (await api.client.put(url, json=pricier, headers=one_org)).status_code == 403
        updated = await api.client.put(url, json=pricier, headers=admin)
        assert updated.status_code == 200, updated.text
        assert (updated.json()["version"], updated.json()["monthly_price"]) == (2, "89.00")
        org = (await api.client.get(f"/api/v1/orgs/{early}", headers=admin)).json()
        assert (org["plan_slug"], org["plan_version"]) == (slug, 1)
        first = (await api.client.get(url, params={"version": 1}, headers=admin)).json()
        assert (first["version"], first["monthly_price"]) == (1, "79.50")
        versions = (await api.client.get(f"{url}/versions", headers=admin)).json()["plans"]
        assert [(p["version"], p["monthly_price"]) for p in versions] == [
            (1, "79.50"),
            (2, "89.00"),
        ]
        before = await row_counts(api.database)
        for bad, status, field in (
            ({**pricier, "currency": "USD"}, 422, "currency"),
            ({**pricier, "monthly_price": "1.001"}, 422, "monthly_price"),
            ({**pricier, "slug": slug}, 422, "slug"),
        ):
            answer = await api.client.put(url, json=bad, headers=admin)
            assert answer.status_code == status, answer.text
            assert field in answer.text
        unknown = await api.client.put(
            f"/api/v1/billing/plans/{new_id('plan')}", json=pricier, headers=admin
        )
        assert unknown.status_code == 404
        assert (await api.client.get(url, params={"version": 3}, headers=admin)).status_code == 404
        assert await row_counts(api.database) == before
    finally:
        await api.client.post(f"{url}/deactivate", headers=admin)
