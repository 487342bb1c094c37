"""Coupons over HTTP, on both databases: defined once, applied to an org once, removed and
archived by the operator alone, and bad input refused naming what is wrong, writing
nothing."""

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id, row_counts
from tests.web import Api

pytestmark = pytest.mark.anyio

COUPONS = "/api/v1/billing/coupons"


def orgs_coupon(org_id: str, code: str) -> str:
    return f"/api/v1/orgs/{org_id}/coupons/{code}"


async def test_a_coupon_is_defined_once_applied_once_removed_and_archived(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    code = new_id("HALF")
    body = {"code": code, "name": "Half off", "percent_off": "50", "duration": "forever"}
    made = await api.client.post(COUPONS, json=body, headers=admin)
    assert made.status_code == 201, made.text
    coupon = made.json()
    assert (coupon["description"], coupon["percent_off"], coupon["redemptions"]) == (
        "50% off forever",
        "50",
        0,
    )
    again = await api.client.post(COUPONS, json=body, headers=admin)
    assert (again.status_code, again.json()) == (200, coupon)
    other = await api.client.post(COUPONS, json={**body, "percent_off": "40"}, headers=admin)
    assert (other.status_code, other.json()["code"]) == (409, "coupon_exists")

    org_id = new_id()
    member = await api.member(org_id, MemberRole.ADMIN)
    applied = await api.client.put(orgs_coupon(org_id, code), headers=admin)
    assert applied.status_code == 201, applied.text
    assert applied.json()["coupon"]["redemptions"] == 1
    retried = await api.client.put(orgs_coupon(org_id, code), headers=admin)
    assert (retried.status_code, retried.json()) == (200, applied.json())
    listed = await api.client.get(f"/api/v1/orgs/{org_id}/coupons", headers=admin)
    assert [c["coupon"]["code"] for c in listed.json()["coupons"]] == [code]
    assert (await api.client.get(f"{COUPONS}/{code}", headers=admin)).json()["redemptions"] == 1
    codes = [c["code"] for c in (await api.client.get(COUPONS, headers=admin)).json()["coupons"]]
    assert code in codes

    # The org's own members never see the operator's coupon calls.
    assert (await api.client.get(COUPONS, headers=member)).status_code in (401, 403)
    assert (await api.client.put(orgs_coupon(org_id, code), headers=member)).status_code in (
        401,
        403,
    )

    removed = await api.client.delete(orgs_coupon(org_id, code), headers=admin)
    assert removed.status_code == 200
    assert removed.json()["removed_at"] is not None
    archived = await api.client.post(f"{COUPONS}/{code}/archive", headers=admin)
    assert archived.json()["archived_at"] is not None
    late_org = new_id()
    await api.member(late_org, MemberRole.ADMIN)
    late = await api.client.put(orgs_coupon(late_org, code), headers=admin)
    assert (late.status_code, late.json()["code"]) == (409, "coupon_not_applicable")
    assert "is archived" in late.json()["detail"]


@pytest.mark.parametrize(
    ("change", "location", "words"),
    [
        ({"percent_off": "0"}, "percent_off", "above 0 and at most 100"),
        ({"percent_off": "101"}, "percent_off", "at most 100"),
        ({"percent_off": None, "amount_off": "5.00"}, "currency", "needs its currency"),
        ({"amount_off": "5.00"}, "body", "give percent_off or amount_off"),
        ({"percent_off": None}, "body", "give percent_off or amount_off"),
        ({"duration": "repeating"}, "periods", "needs periods"),
        ({"periods": 2}, "periods", "not one that lasts forever"),
        ({"duration": "weekly"}, "duration", "'once', 'repeating' or 'forever'"),
        ({"applies_to": ["tokens", "tokens"]}, "applies_to", "names one twice"),
        ({"plans": ["Pro"]}, "plans.0", "should match pattern"),
        ({"max_redemptions": 0}, "max_redemptions", "greater than or equal to 1"),
        ({"redeem_by": "2026-13-01T00:00:00Z"}, "redeem_by", "month value is outside"),
        ({"code": "no spaces"}, "code", "should match pattern"),
        ({"unknown": 1}, "unknown", "Extra inputs are not permitted"),
    ],
)
async def test_a_wrong_coupon_is_refused_naming_the_part_and_writes_nothing(
    api: Api, change: dict[str, object], location: str, words: str
) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    body = {"code": new_id("BAD"), "name": "Bad", "percent_off": "10", "duration": "forever"}
    before = await row_counts(api.database)
    refused = await api.client.post(
        COUPONS, json={k: v for k, v in {**body, **change}.items() if v is not None}, headers=admin
    )
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["errors"][0]["location"].endswith(location)
    assert words in problem["detail"]
    assert await row_counts(api.database) == before


async def test_unknown_coupons_and_orgs_are_404(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    missing = await api.client.get(f"{COUPONS}/{new_id('NONE')}", headers=admin)
    assert (missing.status_code, missing.json()["code"]) == (404, "coupon_not_found")
    code = new_id("TEN")
    body = {"code": code, "name": "Ten", "percent_off": "10", "duration": "once"}
    assert (await api.client.post(COUPONS, json=body, headers=admin)).status_code == 201
    no_org = await api.client.put(orgs_coupon(new_id(), code), headers=admin)
    assert (no_org.status_code, no_org.json()["code"]) == (404, "org_not_found")
    org_id = new_id()
    await api.member(org_id, MemberRole.ADMIN)
    never = await api.client.delete(orgs_coupon(org_id, code), headers=admin)
    assert (never.status_code, never.json()["code"]) == (404, "coupon_not_found")
