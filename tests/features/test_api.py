"""Features over HTTP, on both databases: a plan grants them, an org reads its entitlements
(features and limits) in one cacheable read, an operator gives an org its own values, and
bad input is refused naming what is wrong, writing nothing."""

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

PLANS = "/api/v1/billing/plans"
ENTITLEMENTS = "/api/v1/billing/org/entitlements"


def plan_body(slug: str, features: dict[str, object]) -> dict[str, object]:
    return {
        "slug": slug,
        "name": "Featured",
        "currency": "USD",
        "monthly_price": "20.00",
        "public": False,  # private: the other tests' orgs are never offered it
        "metrics": [{"metric": "tokens", "included_quantity": 1_000}],
        "features": features,
    }


async def test_an_org_reads_its_plans_features_and_limits_in_one_cacheable_read(
    api: Api,
) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("featured")
    granted = {"sso": True, "max_projects": 5, "support": "priority", "audit_log": False}
    created = await api.client.post(PLANS, json=plan_body(slug, granted), headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["features"] == dict(sorted(granted.items()))
    assert (await api.client.get(f"{PLANS}/{slug}", headers=admin)).json()["features"] == (
        dict(sorted(granted.items()))
    )

    org_id = new_id()
    member = await api.member(org_id, MemberRole.MEMBER, plan=slug)
    read = await api.client.get(ENTITLEMENTS, headers=member)
    assert read.status_code == 200, read.text
    assert read.headers["cache-control"] == "private, max-age=60"
    body = read.json()
    assert (body["org_id"], body["plan_slug"], body["plan_version"]) == (org_id, slug, 1)
    assert body["features"] == dict(sorted(granted.items()))
    assert (body["own_features"], body["cache_seconds"]) == ([], 60)
    assert body["limits"]["tokens"] == {
        "included_quantity": 1_000,
        "policy": {"mode": "soft", "grace_percent": 0, "grace_period_hours": None},
    }
    assert body["limits"]["playbook_runs"]["included_quantity"] == 0  # not named: none
    assert body["limits"]["playbook_runs"]["policy"]["mode"] == "hard"
    checker = await api.key(Scope.QUOTA_CHECK, org_id=org_id)
    assert (await api.client.get(ENTITLEMENTS, headers=checker)).json() == body

    # The operator's own values for the org: one replaced, one added; then one cleared.
    own = f"/api/v1/orgs/{org_id}/features"
    put = await api.client.put(f"{own}/max_projects", json={"value": 50}, headers=admin)
    assert put.status_code == 200, put.text
    await api.client.put(f"{own}/beta", json={"value": "early"}, headers=admin)
    body = (await api.client.get(ENTITLEMENTS, headers=member)).json()
    assert body["features"] == {
        "audit_log": False,
        "beta": "early",
        "max_projects": 50,
        "sso": True,
        "support": "priority",
    }
    assert body["own_features"] == ["beta", "max_projects"]
    cleared = await api.client.delete(f"{own}/max_projects", headers=admin)
    assert cleared.json()["features"]["max_projects"] == 5
    again = await api.client.delete(f"{own}/max_projects", headers=admin)  # idempotent
    assert again.status_code == 200
    assert again.json()["own_features"] == ["beta"]

    # Another org's member sees only its own org; a member cannot set values.
    other = await api.member(new_id())  # on Starter: its features, none of the org's own
    theirs = (await api.client.get(ENTITLEMENTS, headers=other)).json()
    assert (theirs["plan_slug"], theirs["own_features"]) == ("starter", [])
    assert theirs["features"] == {"max_projects": 3, "sso": False, "support": "email"}
    refused = await api.client.put(f"{own}/sso", json={"value": False}, headers=member)
    assert refused.status_code == 403


async def test_a_change_of_features_makes_a_new_plan_version(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("featured")
    await api.client.post(PLANS, json=plan_body(slug, {"sso": False}), headers=admin)
    org_id = new_id()
    member = await api.member(org_id, plan=slug)
    body = plan_body(slug, {"sso": True})
    del body["slug"]
    updated = await api.client.put(f"{PLANS}/{slug}", json=body, headers=admin)
    assert updated.status_code == 200, updated.text
    assert (updated.json()["version"], updated.json()["features"]) == (2, {"sso": True})
    # The org keeps the version it is on, features and all, until it changes plan.
    read = (await api.client.get(ENTITLEMENTS, headers=member)).json()
    assert (read["plan_version"], read["features"]) == (1, {"sso": False})


async def test_bad_features_are_refused_naming_what_is_wrong_and_write_nothing(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.member(org_id)
    before = await row_counts(api.database)
    for features, location in (
        ({"sso": ""}, "features.sso"),
        ({"Bad Key": True}, "features"),
        ({"max_projects": 10**16}, "features.max_projects"),
    ):
        refused = await api.client.post(
            PLANS, json=plan_body(new_id("featured"), features), headers=admin
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["location"] == location
    for value in (1.5, None, [True], {"a": 1}):
        refused = await api.client.post(
            PLANS, json=plan_body(new_id("featured"), {"sso": value}), headers=admin
        )
        assert refused.status_code == 422, (value, refused.text)
    own = f"/api/v1/orgs/{org_id}/features"
    for path, body in (
        (f"{own}/sso", {"value": ""}),
        (f"{own}/sso", {"value": 2.5}),
        (f"{own}/sso", {}),
        (f"{own}/Not-A-Key", {"value": True}),
    ):
        refused = await api.client.put(path, json=body, headers=admin)
        assert refused.status_code == 422, (path, body, refused.text)
    missing = await api.client.put(
        f"/api/v1/orgs/{new_id()}/features/sso", json={"value": True}, headers=admin
    )
    assert missing.status_code == 404
    assert missing.json()["code"] == "org_not_found"
    assert await row_counts(api.database) == before
