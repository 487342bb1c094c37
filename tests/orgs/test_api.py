"""Orgs and members pushed by the product's backend."""

from datetime import UTC, datetime, timedelta
from functools import partial

import anyio
import anyio.lowlevel
import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from tests.conftest import new_id
from tests.web import Api

pytestmark = pytest.mark.anyio

HOUR = timedelta(hours=1)


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


async def test_the_org_list_pages_through_250_orgs_with_no_repeats_or_gaps_as_orgs_are_added(
    api: Api,
) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    tag = new_id("list")
    before = {f"{tag}-{n:03d}" for n in range(250)}
    for org_id in sorted(before):
        await api.kernel.orgs.create(org_id, plan_slug="growth")
    added: list[str] = []
    seen: list[str] = []

    cursor = None
    while True:
        params = {"limit": "20", "plan": "growth"} | ({"cursor": cursor} if cursor else {})
        page = await api.client.get("/api/v1/orgs", params=params, headers=admin)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["data"]) <= 20
        seen.extend(org["org_id"] for org in body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        # Between two pages, other writers add orgs before, among and after the cursor.
        async with anyio.create_task_group() as writers:
            for _ in range(5):
                org_id = f"{tag}-{(len(added) * 37) % 260:03d}x"
                added.append(org_id)
                writers.start_soon(partial(api.kernel.orgs.create, org_id, plan_slug="growth"))
    assert len(added) >= 60
    assert any(org_id < seen[-1] for org_id in added)  # some behind the reader's position
    assert len(seen) == len(set(seen))  # no repeats
    assert seen == sorted(seen)  # one order, org id
    assert before <= set(seen)  # no gaps: every org that was there all along is listed


async def test_the_org_list_filters_and_says_how_each_org_was_created(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    writer = await api.key(Scope.USAGE_WRITE)
    on_purpose, typo = new_id("real"), new_id("typo")
    await api.client.put(
        f"/api/v1/orgs/{on_purpose}", json={"plan_slug": "enterprise"}, headers=admin
    )
    ingested = await api.client.post(
        "/api/v1/usage/events",
        json={
            "events": [
                {"org_id": on_purpose, "metric": "tokens", "quantity": 1, "idempotency_key": "a"},
                {"org_id": typo, "metric": "tokens", "quantity": 1, "idempotency_key": "b"},
                {"org_id": typo, "metric": "tokens", "quantity": 2, "idempotency_key": "c"},
            ]
        },
        headers=writer,
    )
    body = ingested.json()
    assert [r["created_org"] for r in body["results"]] == [False, True, False]
    assert body["orgs_created"] == 1
    again = await api.client.post(
        "/api/v1/usage/events",
        json={
            "events": [{"org_id": typo, "metric": "tokens", "quantity": 1, "idempotency_key": "b"}]
        },
        headers=writer,
    )
    assert (again.json()["orgs_created"], again.json()["results"][0]["created_org"]) == (0, False)

    fetched = (await api.client.get(f"/api/v1/orgs/{typo}", headers=admin)).json()
    assert (fetched["created_via"], fetched["plan_slug"], fetched["status"]) == (
        "usage_event",
        "internal-dev",
        "trial",
    )
    listed = await api.client.get(
        "/api/v1/orgs",
        params={"plan": "enterprise", "status": "trial", "limit": 200},
        headers=admin,
    )
    mine = [org for org in listed.json()["data"] if org["org_id"] == on_purpose]
    assert [org["created_via"] for org in mine] == ["api"]
    assert all(org["plan_slug"] == "enterprise" for org in listed.json()["data"])

    one_org = await api.key(Scope.BILLING_ADMIN, org_id=typo)
    restricted = await api.client.get("/api/v1/orgs", headers=one_org)
    assert [org["org_id"] for org in restricted.json()["data"]] == [typo]
    for params in ({"cursor": "a\nb"}, {"limit": "0"}, {"limit": "201"}, {"status": "asleep"}):
        refused = await api.client.get("/api/v1/orgs", params=params, headers=admin)
        assert refused.status_code == 422, params
        assert next(iter(params)) in refused.text
    reader = await api.key(Scope.QUOTA_CHECK)
    assert (await api.client.get("/api/v1/orgs", headers=reader)).status_code == 403


async def test_usage_read_back_month_by_month_and_day_by_day(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    await api.kernel.orgs.create(org_id, plan_slug="starter")
    now = datetime.now(UTC)
    this_month = BillingPeriod.containing(now)
    last_month = this_month.previous()
    await api.kernel.usage.record(
        org_id, "tokens", 700, idempotency_key="old", occurred_at=this_month.start - HOUR
    )
    await api.kernel.usage.record(org_id, "tokens", 5, idempotency_key="new", occurred_at=now)
    await api.kernel.members.add(org_id, "alice")
    url = f"/api/v1/orgs/{org_id}/usage"

    monthly = await api.client.get(
        url, params={"from": last_month.previous().label, "to": this_month.label}, headers=admin
    )
    assert monthly.status_code == 200, monthly.text
    body = monthly.json()
    assert (body["from"], body["to"], body["granularity"]) == (
        last_month.previous().label,
        this_month.label,
        "month",
    )
    assert [(p["start"], p["usage"]["tokens"], p["usage"]["seats"]) for p in body["data"]] == [
        (last_month.previous().key.isoformat(), 0, 0),
        (last_month.key.isoformat(), 700, 0),
        (this_month.key.isoformat(), 5, 1),
    ]
    assert body["data"][-1]["end"] == this_month.next().key.isoformat()
    assert body["next_cursor"] is None

    points, cursor = [], None
    while True:  # day by day, a page of 7 at a time
        params = {"from": last_month.label, "granularity": "day", "limit": "7"}
        page = await api.client.get(
            url, params={**params, **({"cursor": cursor} if cursor else {})}, headers=admin
        )
        points += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert points[0]["start"] == last_month.key.isoformat()
    assert points[-1]["start"] == now.date().isoformat()  # up to today, not the month's end
    starts = [p["start"] for p in points]
    assert starts == sorted(set(starts))
    assert len(starts) == (now.date() - last_month.key).days + 1
    by_day = {p["start"]: p["usage"] for p in points}
    assert by_day[last_month.last_day.isoformat()] == {"tokens": 700, "playbook_runs": 0}
    assert by_day[now.date().isoformat()]["tokens"] == 5
    assert sum(p["usage"]["tokens"] for p in points) == 705

    default = (await api.client.get(url, headers=admin)).json()
    assert [p["start"] for p in default["data"]] == [this_month.key.isoformat()]
    ahead = {"from": this_month.label, "to": this_month.next().next().label}
    ahead_points = (await api.client.get(url, params=ahead, headers=admin)).json()["data"]
    assert [p["start"] for p in ahead_points] == [this_month.key.isoformat()]  # none ahead
    backwards = {"from": this_month.label, "to": last_month.label}
    assert (await api.client.get(url, params=backwards, headers=admin)).json()["data"] == []
    for params in ({"from": "2026-1"}, {"granularity": "week"}, {"limit": "500"}):
        refused = await api.client.get(url, params=params, headers=admin)
        assert refused.status_code == 422, params
    missing = await api.client.get(f"/api/v1/orgs/{new_id()}/usage", headers=admin)
    assert missing.status_code == 404
