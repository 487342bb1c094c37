from datetime import UTC, datetime, timedelta

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.kernel import utc_now
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id, save_plan
from tests.web import Api, bearer, user_token

pytestmark = pytest.mark.anyio

HOUR = timedelta(hours=1)


async def test_plans_list_the_active_plans_with_money_as_decimal_strings(api: Api) -> None:
    headers = await api.member(new_id())
    response = await api.client.get("/api/v1/billing/plans", headers=headers)
    assert response.status_code == 200
    plans = {p["slug"]: p for p in response.json()["plans"]}
    starter = plans["starter"]
    assert (starter["monthly_price"], starter["currency"]) == ("49.00", "USD")
    tokens = next(m for m in starter["metrics"] if m["metric"] == "tokens")
    assert tokens == {
        "metric": "tokens",
        "included_quantity": 1_000_000,
        "price_model": "per_unit",
        "overage_unit_price": "0.02",
        "overage_unit_size": 1000,
        "tiers": [],
        "dimension": None,
        "policy": {"mode": "soft", "grace_percent": 0, "grace_period_hours": None},
    }
    growth_tokens = next(m for m in plans["growth"]["metrics"] if m["metric"] == "tokens")
    assert growth_tokens["overage_unit_price"] == "0.015"


async def test_summary_of_the_users_only_org(api: Api) -> None:
    org_id = new_id()
    headers = await api.member(org_id)
    await api.kernel.usage.record(org_id, "tokens", 850_000, idempotency_key="t")
    response = await api.client.get("/api/v1/billing/org/summary", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["org_id"], body["plan"]["slug"], body["status"]) == (org_id, "starter", "trial")
    assert body["trial_days_left"] == 30
    tokens = next(u for u in body["usage"] if u["metric"] == "tokens")
    assert (tokens["used"], tokens["limit"], tokens["percent_used"]) == (850_000, 1_000_000, 85.0)
    assert body["estimated_overage"] == "0.00"
    # A trial is not billed: the figure is the upcoming invoice's, and the answer says why.
    assert (body["estimated_total"], body["invoice_number"]) == ("0.00", None)
    assert body["estimate_notes"] == [
        "not billed: the org has been in trial (or canceled) all month so far"
    ]
    assert body["enforcement"] == "soft"


async def test_summary_of_a_past_month_and_the_two_ways_to_write_its_end(api: Api) -> None:
    org_id = new_id()
    headers = await api.member(org_id)
    this_month = BillingPeriod.containing(datetime.now(UTC))
    last_month = this_month.previous()
    await api.kernel.usage.record(
        org_id, "tokens", 1_234, idempotency_key="old", occurred_at=this_month.start - HOUR
    )
    await api.kernel.usage.record(org_id, "tokens", 5, idempotency_key="new")
    url = "/api/v1/billing/org/summary"

    past = (await api.client.get(url, params={"period": last_month.label}, headers=headers)).json()
    assert past["period"] == {
        "start": last_month.key.isoformat(),
        "end": this_month.key.isoformat(),
        "last_day": (this_month.key - timedelta(days=1)).isoformat(),
        "days_left": 0,
    }
    tokens = next(u for u in past["usage"] if u["metric"] == "tokens")
    assert tokens["used"] == 1_234
    seats = next(u for u in past["usage"] if u["metric"] == "seats")
    assert (seats["used"], seats["peak"]) == (0, 0)  # no member that month

    now = (await api.client.get(url, headers=headers)).json()
    assert now["period"]["start"] == this_month.key.isoformat()
    assert now["period"]["last_day"] == this_month.last_day.isoformat()
    assert next(u for u in now["usage"] if u["metric"] == "tokens")["used"] == 5

    ahead = await api.client.get(url, params={"period": this_month.next().label}, headers=headers)
    assert [u["used"] for u in ahead.json()["usage"]] == [0, 0, 0]  # nothing recorded yet
    for wrong in ("2026-13", "2026-1", "last"):
        refused = await api.client.get(url, params={"period": wrong}, headers=headers)
        assert refused.status_code == 422, wrong
        assert "period" in refused.text


async def test_a_user_in_several_orgs_must_name_one(api: Api) -> None:
    first, second = new_id(), new_id()
    user_id = new_id("user")
    for org_id in (first, second):
        await api.kernel.orgs.create(org_id)
        await api.kernel.members.add(org_id, user_id)
    headers = bearer(user_token(user_id))
    ambiguous = await api.client.get("/api/v1/billing/org/summary", headers=headers)
    assert ambiguous.status_code == 400
    assert ambiguous.json()["code"] == "org_required"
    assert "X-Org-Id" in ambiguous.json()["detail"]
    named = await api.client.get(
        "/api/v1/billing/org/summary", headers={**headers, "X-Org-Id": second}
    )
    assert (named.status_code, named.json()["org_id"]) == (200, second)


async def test_another_orgs_summary_looks_exactly_like_a_missing_org(api: Api) -> None:
    headers = await api.member(new_id())
    other = new_id()
    await api.kernel.orgs.create(other)
    foreign = await api.client.get(
        "/api/v1/billing/org/summary", headers={**headers, "X-Org-Id": other}
    )
    missing = await api.client.get(
        "/api/v1/billing/org/summary", headers={**headers, "X-Org-Id": "no-such-org"}
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["code"] == missing.json()["code"] == "org_not_found"
    assert foreign.json()["detail"].replace(other, "X") == missing.json()["detail"].replace(
        "no-such-org", "X"
    )


async def test_service_keys_name_the_org_and_need_a_read_scope(api: Api) -> None:
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    reader = await api.key(Scope.QUOTA_CHECK)
    ok = await api.client.get("/api/v1/billing/org/summary", headers={**reader, "X-Org-Id": org_id})
    assert ok.status_code == 200
    no_org = await api.client.get("/api/v1/billing/org/summary", headers=reader)
    assert (no_org.status_code, no_org.json()["code"]) == (400, "org_required")
    writer = await api.key(Scope.USAGE_WRITE)
    refused = await api.client.get(
        "/api/v1/billing/org/summary", headers={**writer, "X-Org-Id": org_id}
    )
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    assert "quota:check" in refused.json()["detail"]
    unknown = await api.client.get(
        "/api/v1/billing/org/summary", headers={**reader, "X-Org-Id": new_id()}
    )
    assert unknown.status_code == 404


@pytest.mark.parametrize(
    ("role", "allowed"),
    [(MemberRole.OWNER, True), (MemberRole.ADMIN, True), (MemberRole.MEMBER, False)],
)
async def test_only_owners_and_admins_change_the_plan(
    api: Api, role: MemberRole, allowed: bool
) -> None:
    org_id = new_id()
    headers = await api.member(org_id, role)
    response = await api.client.post(
        "/api/v1/billing/org/plan", json={"plan_slug": "growth"}, headers=headers
    )
    state = await api.kernel.subscriptions.billing_state(org_id)
    if allowed:
        assert response.status_code == 200, response.text
        made = response.json()
        # V1's answer, and what the change did: an upgrade, at once; a trial bills nothing.
        assert (made["org_id"], made["plan_slug"], made["status"]) == (org_id, "growth", "trial")
        assert (made["kind"], made["scheduled"], made["current_plan"]) == (
            "upgrade",
            False,
            "growth",
        )
        assert made["lines"] == []
        assert state.plan_slug == "growth"
    else:
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")
        assert "admin or owner" in response.json()["detail"]
        assert state.plan_slug == "starter"


async def test_plan_change_by_an_admin_key_and_its_refusals(api: Api) -> None:
    org_id = new_id()
    await api.kernel.orgs.create(org_id)
    admin = {**(await api.key(Scope.BILLING_ADMIN)), "X-Org-Id": org_id}
    changed = await api.client.post(
        "/api/v1/billing/org/plan", json={"plan_slug": "enterprise"}, headers=admin
    )
    assert changed.json()["plan_slug"] == "enterprise"

    unknown = await api.client.post(
        "/api/v1/billing/org/plan", json={"plan_slug": "nope"}, headers=admin
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "plan_not_found")

    retired = await save_plan(api.database, datetime.now(UTC), active=False)
    inactive = await api.client.post(
        "/api/v1/billing/org/plan", json={"plan_slug": retired.slug}, headers=admin
    )
    assert (inactive.status_code, inactive.json()["code"]) == (409, "plan_inactive")

    malformed = await api.client.post(
        "/api/v1/billing/org/plan", json={"plan": "growth"}, headers=admin
    )
    assert malformed.status_code == 422
    locations = {e["location"] for e in malformed.json()["errors"]}
    assert locations == {"body.plan_slug", "body.plan"}
    assert (await api.kernel.subscriptions.billing_state(org_id)).plan_slug == "enterprise"


def next_month_start() -> str:
    """When this month's usage resets, as the API writes it."""
    return BillingPeriod.containing(utc_now()).end.isoformat().replace("+00:00", "Z")


async def test_quota_check(api: Api) -> None:
    org_id = new_id()
    headers = await api.member(org_id)
    await api.kernel.usage.record(org_id, "playbook_runs", 199, idempotency_key="r")
    response = await api.client.post(
        "/api/v1/billing/org/check",
        json={"metric": "playbook_runs", "amount": 2},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json() == {
        "metric": "playbook_runs",
        "requested": 2,
        "used": 199,
        "limit": 200,
        "remaining": 1,
        "soft_limit_exceeded": False,
        "would_exceed": True,
        "allowed": True,
        "reason": "soft_limit_exceeded",
        "message": f"{org_id} has used 199 of the 200 runs included in Starter this month; "
        "usage beyond them is billed as overage.",
        "resets_at": next_month_start(),
        "grace_ends_at": None,
        "status_blocks_at": None,
        "upgrade": None,
        "enforcement": "soft",
        "policy": {"mode": "soft", "grace_percent": 0, "grace_period_hours": None},
        "consumed": False,
        "held": 0,
    }
    default_amount = await api.client.post(
        "/api/v1/billing/org/check", json={"metric": "tokens"}, headers=headers
    )
    assert default_amount.json()["requested"] == 1
    assert default_amount.json()["reason"] == "within_limit"


@pytest.mark.parametrize(
    ("body", "status", "location"),
    [
        ({"metric": "tokens", "amount": 1.5}, 422, "body.amount"),
        ({"metric": "tokens", "amount": -1}, 422, "body.amount"),
        ({"metric": "tokens", "amount": "5"}, 422, "body.amount"),
        ({"amount": 5}, 422, "body.metric"),
        ({"metric": "gpu_hours", "amount": 5}, 404, "metric"),
    ],
)
async def test_quota_check_refuses_bad_input_naming_the_field(
    api: Api, body: dict[str, object], status: int, location: str
) -> None:
    headers = await api.member(new_id())
    response = await api.client.post("/api/v1/billing/org/check", json=body, headers=headers)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert location in {e["location"] for e in response.json()["errors"]}
