"""The plans over HTTP: the default plan, named on creation or later, by a deployment admin."""

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id
from tests.web import Api

pytestmark = pytest.mark.anyio


async def test_an_admin_names_the_default_plan_and_new_orgs_start_on_it(own_api: Api) -> None:
    admin = await own_api.key(Scope.BILLING_ADMIN)
    plans = "/api/v1/billing/plans"
    listed = (await own_api.client.get(plans, headers=admin)).json()["plans"]
    assert [p["slug"] for p in listed if p["is_default"]] == ["internal-dev"]

    body = {"slug": "pro", "name": "Pro", "currency": "USD", "monthly_price": "30.00"}
    created = await own_api.client.post(plans, json={**body, "default": True}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["is_default"] is True
    org_id = new_id()
    assert (await own_api.client.put(f"/api/v1/orgs/{org_id}", json={}, headers=admin)).json()[
        "plan_slug"
    ] == "pro"

    refused = await own_api.client.post(f"{plans}/pro/deactivate", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["code"] == "plan_is_default"
    moved = await own_api.client.post(f"{plans}/growth/default", headers=admin)
    assert moved.status_code == 200
    assert moved.json()["is_default"] is True
    assert (await own_api.client.get(f"{plans}/pro", headers=admin)).json()["is_default"] is False
    withdrawn = await own_api.client.post(f"{plans}/pro/deactivate", headers=admin)
    assert withdrawn.json()["is_active"] is False
    again = await own_api.client.post(f"{plans}/pro/default", headers=admin)
    assert again.status_code == 409
    assert again.json()["code"] == "plan_inactive"

    member = await own_api.member(new_id(), plan="growth")
    assert (await own_api.client.post(f"{plans}/growth/default", headers=member)).status_code == 403


async def test_a_private_plan_is_assigned_by_a_key_and_never_offered_to_people(api: Api) -> None:
    """internal-dev, the demo's default, is private: people see the plans offered to orgs
    and cannot move their org to it; the operator's backend sees and assigns it."""
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    owner = await api.member(org_id, MemberRole.OWNER, plan="growth")
    plans = "/api/v1/billing/plans"
    seen = (await api.client.get(plans, headers=owner)).json()["plans"]
    assert "internal-dev" not in {p["slug"] for p in seen}
    assert all(p["is_public"] for p in seen)
    listed = (await api.client.get(plans, headers=admin)).json()["plans"]
    assert {p["slug"]: p["is_public"] for p in listed}["internal-dev"] is False

    move = {"plan_slug": "internal-dev"}
    as_owner, as_admin = {**owner, "X-Org-Id": org_id}, {**admin, "X-Org-Id": org_id}
    for path in ("/api/v1/billing/org/plan/preview", "/api/v1/billing/org/plan"):
        refused = await api.client.post(path, json=move, headers=as_owner)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "plan_not_offered"
    assert await api.kernel.subscriptions.scheduled_change(org_id) is None
    made = await api.client.post("/api/v1/billing/org/plan", json=move, headers=as_admin)
    assert made.status_code == 200, made.text
    scheduled = await api.kernel.subscriptions.scheduled_change(org_id)  # a downgrade waits
    assert scheduled is not None
    assert scheduled.plan_slug == "internal-dev"


async def test_default_and_public_take_only_json_booleans_and_write_nothing_else(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("team")
    body = {"slug": slug, "name": "Team", "currency": "USD", "monthly_price": "10.00"}
    for wrong in ({"default": 1}, {"public": 0}, {"public": "false"}):
        refused = await api.client.post(
            "/api/v1/billing/plans", json={**body, **wrong}, headers=admin
        )
        assert refused.status_code == 422, wrong
        assert next(iter(wrong)) in refused.text
    assert (await api.client.get(f"/api/v1/billing/plans/{slug}", headers=admin)).status_code == 404


async def test_an_update_that_leaves_public_out_keeps_a_private_plan_private(api: Api) -> None:
    """PUT takes the plan whole, but a body written before plans could be private (no
    `public`) must not start offering a private contract to every org."""
    admin = await api.key(Scope.BILLING_ADMIN)
    slug = new_id("contract")
    body = {"name": "Contract", "currency": "USD", "monthly_price": "500.00"}
    made = await api.client.post(
        "/api/v1/billing/plans", json={**body, "slug": slug, "public": False}, headers=admin
    )
    assert made.json()["is_public"] is False
    path = f"/api/v1/billing/plans/{slug}"
    repriced = await api.client.put(path, json={**body, "monthly_price": "550.00"}, headers=admin)
    assert (repriced.json()["is_public"], repriced.json()["version"]) == (False, 2)
    opened = await api.client.put(path, json={**body, "public": True}, headers=admin)
    assert opened.json()["is_public"] is True
    kept = await api.client.put(path, json=body, headers=admin)
    assert kept.json()["is_public"] is True
