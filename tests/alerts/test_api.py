"""Alert thresholds, alerts and the event log over HTTP."""

from datetime import UTC, date, datetime

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.invoices.rules import close_failed_event
from tests.conftest import new_id, row_counts, save_plan
from tests.web import Api

pytestmark = pytest.mark.anyio


async def org_with_usage(api: Api, used: int) -> str:
    plan = await save_plan(api.database, datetime.now(UTC))  # 500 tokens
    org_id = new_id()
    admin = await api.key(Scope.BILLING_ADMIN)
    writer = await api.key(Scope.USAGE_WRITE)
    answer = await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"plan_slug": plan.slug}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    if used:
        event = {"org_id": org_id, "metric": "tokens", "quantity": used, "idempotency_key": "u1"}
        answer = await api.client.post(
            "/api/v1/usage/events", json={"events": [event]}, headers=writer
        )
        assert answer.status_code in (200, 201, 202), answer.text
    return org_id


async def test_an_orgs_thresholds_default_to_its_plans_and_can_be_its_own(api: Api) -> None:
    org_id = await org_with_usage(api, 300)
    admin = await api.key(Scope.BILLING_ADMIN)
    url = f"/api/v1/orgs/{org_id}/alert-thresholds"
    shown = (await api.client.get(url, headers=admin)).json()
    tokens = next(m for m in shown["metrics"] if m["metric"] == "tokens")
    assert tokens == {
        "metric": "tokens",
        "limit": 500,
        "source": "plan",
        "thresholds": [
            {"key": "80%", "percent": 80, "quantity": 400},
            {"key": "100%", "percent": 100, "quantity": 500},
        ],
    }
    body = {"thresholds": [{"percent": 50}, {"quantity": 5000}, {"percent": 150}]}
    answer = await api.client.put(f"{url}/tokens", json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    tokens = next(m for m in answer.json()["metrics"] if m["metric"] == "tokens")
    assert tokens["source"] == "org"
    assert [t["key"] for t in tokens["thresholds"]] == ["50%", "150%", "5000"]
    events = (
        await api.client.get("/api/v1/events", params={"org_id": org_id}, headers=admin)
    ).json()
    [crossed] = events["data"]  # 300 of 500 is past 50 %: crossed by the change itself
    assert (crossed["type"], crossed["data"]["threshold"]["key"]) == (
        "usage.threshold_crossed",
        "50%",
    )
    assert events["next_cursor"] is None
    alerts = (await api.client.get(f"/api/v1/orgs/{org_id}/alerts", headers=admin)).json()
    assert [(a["threshold"], a["status"], a["used"]) for a in alerts["alerts"]] == [
        ("50%", "crossed", 300)
    ]
    assert (await api.client.delete(f"{url}/tokens", headers=admin)).status_code == 200
    events = (
        await api.client.get("/api/v1/events", params={"org_id": org_id}, headers=admin)
    ).json()
    assert events["data"][0]["type"] == "usage.threshold_resolved"


async def test_threshold_refusals_name_what_is_wrong_and_write_nothing(api: Api) -> None:
    org_id = await org_with_usage(api, 0)
    admin = await api.key(Scope.BILLING_ADMIN)
    other = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    url = f"/api/v1/orgs/{org_id}/alert-thresholds/tokens"
    before = await row_counts(api.database)
    for bad in (
        {"thresholds": [{"percent": 0}]},
        {"thresholds": [{"percent": 1001}]},
        {"thresholds": [{"percent": 50, "quantity": 5}]},
        {"thresholds": [{}]},
        {"thresholds": [{"quantity": 1.5}]},
        {"thresholds": [{"quantity": n} for n in range(1, 12)]},
        {"thresholds": "80%"},
        {},
    ):
        answer = await api.client.put(url, json=bad, headers=admin)
        assert answer.status_code == 422, bad
        assert "thresholds" in answer.text
    assert (await api.client.put(url, json={"thresholds": []}, headers=other)).status_code == 403
    unknown = await api.client.put(
        f"/api/v1/orgs/{new_id()}/alert-thresholds/tokens", json={"thresholds": []}, headers=admin
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "org_not_found")
    metric = await api.client.put(
        f"/api/v1/orgs/{org_id}/alert-thresholds/nope", json={"thresholds": []}, headers=admin
    )
    assert (metric.status_code, metric.json()["code"]) == (404, "unknown_metric")
    assert await row_counts(api.database) == before


async def test_a_plans_thresholds_are_set_by_a_deployment_admin(api: Api) -> None:
    plan = await save_plan(api.database, datetime.now(UTC))
    url = f"/api/v1/billing/plans/{plan.slug}/metrics/tokens/alert-thresholds"
    body = {"thresholds": [{"percent": 90}]}
    one_org = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    assert (await api.client.put(url, json=body, headers=one_org)).status_code == 403
    admin = await api.key(Scope.BILLING_ADMIN)
    answer = await api.client.put(url, json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "plan_slug": plan.slug,
        "metric": "tokens",
        "thresholds": [{"key": "90%", "percent": 90, "quantity": 450}],
    }
    unnamed = await api.client.put(
        f"/api/v1/billing/plans/{plan.slug}/metrics/seats/alert-thresholds",
        json=body,
        headers=admin,
    )
    assert (unnamed.status_code, unnamed.json()["code"]) == (404, "metric_not_in_plan")


async def test_the_event_log_pages_and_filters_and_keeps_to_a_keys_org(api: Api) -> None:
    org_id = await org_with_usage(api, 600)  # 80 % and 100 %
    admin = await api.key(Scope.BILLING_ADMIN)
    first = (
        await api.client.get("/api/v1/events", params={"org_id": org_id, "limit": 1}, headers=admin)
    ).json()
    assert first["data"][0]["data"]["threshold"]["key"] == "100%"
    second = (
        await api.client.get(
            "/api/v1/events",
            params={"org_id": org_id, "limit": 1, "cursor": first["next_cursor"]},
            headers=admin,
        )
    ).json()
    assert second["data"][0]["data"]["threshold"]["key"] == "80%"
    assert second["next_cursor"] is None
    typed = await api.client.get(
        "/api/v1/events", params={"org_id": org_id, "type": "quota.blocked"}, headers=admin
    )
    assert typed.json() == {"data": [], "next_cursor": None}
    own = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    failed = close_failed_event(org_id, date(2026, 4, 1), "too large", datetime.now(UTC))
    await api.kernel.events.record([failed])  # the operators', about the org
    mine = (await api.client.get("/api/v1/events", headers=own)).json()["data"]
    assert {e["data"]["org_id"] for e in mine} == {org_id}
    assert [e["type"] for e in mine] == ["usage.threshold_crossed"] * 2
    theirs = await api.client.get("/api/v1/events", params={"org_id": org_id}, headers=admin)
    assert theirs.json()["data"][0]["id"] == failed.event_id  # newest first
    elsewhere = await api.client.get("/api/v1/events", params={"org_id": new_id()}, headers=own)
    assert elsewhere.status_code == 403
    unknown = await api.client.get("/api/v1/events", params={"cursor": "evt_1"}, headers=admin)
    assert (unknown.status_code, "cursor" in unknown.text) == (422, True)
    bad_type = await api.client.get("/api/v1/events", params={"type": "nope"}, headers=admin)
    assert bad_type.status_code == 422
    writer = await api.key(Scope.USAGE_WRITE)
    assert (await api.client.get("/api/v1/events", headers=writer)).status_code == 403
