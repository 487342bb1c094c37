"""Orgs and members pushed by the product's backend."""

import pytest

from billing_kernel.auth.rules import Scope
from tests.api.conftest import Api
from tests.conftest import new_id

pytestmark = pytest.mark.anyio


async def test_put_org_creates_then_updates_idempotently(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    created = await api.client.put(f"/api/v1/orgs/{org_id}", json={"name": "Acme"}, headers=admin)
    assert created.status_code == 200, created.text
    assert created.json()["plan_slug"] == "internal-dev"
    assert created.json()["status"] == "trial"
    again = await api.client.put(f"/api/v1/orgs/{org_id}", json={"name": "Acme"}, headers=admin)
    assert again.json() == created.json()
    moved = await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"name": "Acme Inc", "plan_slug": "growth"}, headers=admin
    )
    assert (moved.json()["name"], moved.json()["plan_slug"]) == ("Acme Inc", "growth")
    fetched = await api.client.get(f"/api/v1/orgs/{org_id}", headers=admin)
    assert fetched.json() == moved.json()


async def test_members_are_put_and_removed_idempotently_and_count_as_seats(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.client.put(f"/api/v1/orgs/{org_id}", json={}, headers=admin)
    base = f"/api/v1/orgs/{org_id}/members"
    await api.client.put(f"{base}/alice", json={"role": "owner"}, headers=admin)
    await api.client.put(f"{base}/bob", json={}, headers=admin)
    repeated = await api.client.put(f"{base}/bob", json={"role": "admin"}, headers=admin)
    assert repeated.json() == {
        "org_id": org_id,
        "seats": 2,
        "members": [{"user_id": "alice", "role": "owner"}, {"user_id": "bob", "role": "admin"}],
    }
    assert (await api.client.delete(f"{base}/bob", headers=admin)).status_code == 204
    assert (await api.client.delete(f"{base}/bob", headers=admin)).status_code == 204
    listed = await api.client.get(base, headers=admin)
    assert listed.json()["seats"] == 1
    usage = await api.kernel.summary.period_usage(org_id)
    assert (usage.used["seats"], usage.peaks["seats"]) == (1, 2)


async def test_org_admin_refusals(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    reader = await api.key(Scope.QUOTA_CHECK)
    org_id = new_id()
    assert (
        await api.client.put(f"/api/v1/orgs/{org_id}", json={}, headers=reader)
    ).status_code == 403
    missing = await api.client.put(f"/api/v1/orgs/{new_id()}/members/u", json={}, headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "org_not_found")
    bad_role = await api.client.put(
        f"/api/v1/orgs/{org_id}/members/u", json={"role": "king"}, headers=admin
    )
    assert bad_role.status_code == 422
    bad_plan = await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"plan_slug": "nope"}, headers=admin
    )
    assert (bad_plan.status_code, bad_plan.json()["code"]) == (404, "plan_not_found")
    assert (await api.client.get(f"/api/v1/orgs/{org_id}", headers=admin)).status_code == 404
    long_id = await api.client.put(f"/api/v1/orgs/{'x' * 65}", json={}, headers=admin)
    assert long_id.status_code == 422
