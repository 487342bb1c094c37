"""The hot paths (the quota check's, ingestion's) answer exactly as the FastAPI routes do:
the same status, headers and body for every kind of request, answered or refused, on both
databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.db.database import Database
from billing_kernel.members.rules import MemberRole
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota import hot_path
from billing_kernel.quota.routes import check_quota
from billing_kernel.quota.rules import LimitOverride
from billing_kernel.usage import hot_path as ingest_hot_path
from billing_kernel.usage.routes import ingest_events
from billing_kernel.web.hot_path import HotPath
from tests.conftest import new_id
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio

CHECK = "/api/v1/billing/org/check"


@pytest.fixture
async def route_only(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """The same app without the hot paths: every request through FastAPI's routes."""
    async with app_for(database) as client:
        app: Any = client._transport.app  # type: ignore[attr-defined]
        app.user_middleware = [m for m in app.user_middleware if not issubclass(m.cls, HotPath)]
        yield client


async def answers(
    api: Api,
    route_only: httpx.AsyncClient,
    headers: dict[str, str],
    path: str = CHECK,
    **request: Any,
) -> tuple[httpx.Response, httpx.Response]:
    """The hot path's answer and the route's to the same request, after which both must
    be equal; a fixed request id makes the problem bodies comparable."""
    headers = {**headers, "X-Request-Id": "same-request"}
    hot = await api.client.post(path, headers=headers, **request)
    route = await route_only.post(path, headers=headers, **request)
    assert (hot.status_code, dict(hot.headers), hot.content) == (
        route.status_code,
        dict(route.headers),
        route.content,
    )
    return hot, route


async def test_checks_answered_and_refused_are_the_routes_answers(
    api: Api, route_only: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = []  # the requests the hot path answered itself, not the route

    async def counted(*args: Any) -> Any:
        handled.append(args[0])
        return await check_quota(*args)

    monkeypatch.setattr(hot_path, "check_quota", counted)
    org_id = new_id()
    member = await api.member(org_id, MemberRole.ADMIN)
    await api.kernel.quota.set_override(
        org_id, "playbook_runs", LimitOverride(2, sets_included=True, mode=Enforcement.HARD)
    )
    service = await api.key(Scope.QUOTA_CHECK)
    with_org = {**service, "X-Org-Id": org_id}
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        (member, {"json": {"metric": "tokens", "amount": 1_000}}),
        (with_org, {"json": {"metric": "playbook_runs", "amount": 3}}),  # refused, with upgrade
        (with_org, {"json": {"metric": "playbook_runs"}}),
        (with_org, {"json": {"metric": "gpu_hours"}}),  # unknown metric: 404
        (with_org, {"json": {"metric": "seats"}}),  # a check of seats (not a consume)
        (service, {"json": {"metric": "tokens"}}),  # no org named: 400
        ({**service, "X-Org-Id": new_id()}, {"json": {"metric": "tokens"}}),  # no such org: 404
        ({"Authorization": "Bearer bk_not-a-key", "X-Org-Id": org_id}, {"json": {"metric": "x"}}),
        ({"Authorization": "Bearer not.a.jwt"}, {"json": {"metric": "tokens"}}),
        ({"Authorization": "Basic abc"}, {"json": {"metric": "tokens"}}),
        ({}, {"json": {"metric": "tokens"}}),  # no credentials: 401
        (with_org, {"json": {"metric": "tokens", "amount": -1}}),  # invalid body: 422
        (with_org, {"content": b"{not json"}),
        ({**with_org, "Content-Type": "text/plain"}, {"content": b'{"metric": "tokens"}'}),
        (with_org, {"json": {"metric": "tokens", "consume": True, "idempotency_key": "k"}}),
    ]
    statuses = []
    for headers, request in cases:
        hot, _ = await answers(api, route_only, headers, **request)
        statuses.append(hot.status_code)
    assert statuses == [200, 200, 200, 404, 200, 400, 404, 401, 401, 401, 401, 422, 422, 422, 403]
    # Every request with a valid body and a bearer credential that got past authentication
    # and org access; the rest were the route's alone.
    assert len(handled) == 7


async def test_consumes_and_their_replays_are_the_routes_answers(
    api: Api, route_only: httpx.AsyncClient
) -> None:
    org_id = new_id()
    await api.kernel.orgs.create(org_id, plan_slug="starter")
    writer = {**await api.key(Scope.USAGE_WRITE), "X-Org-Id": org_id}
    consume = {"metric": "tokens", "amount": 5, "consume": True, "idempotency_key": "c-1"}
    first = await api.client.post(CHECK, headers=writer, json=consume)
    assert first.status_code == 200
    assert "idempotent-replayed" not in first.headers
    replays = await answers(api, route_only, writer, json=consume)
    assert all(r.headers["idempotent-replayed"] == "true" for r in replays)
    assert replays[0].json() == first.json()
    conflict, _ = await answers(api, route_only, writer, json={**consume, "amount": 6})
    assert conflict.json()["code"] == "idempotency_conflict"
    usage = await api.kernel.summary.period_usage(org_id)
    assert usage.used["tokens"] == 5


INGEST = "/api/v1/usage/events"


async def test_ingestion_answered_and_refused_is_the_routes_answer(
    api: Api, route_only: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    handled = []

    async def counted(*args: Any) -> Any:
        handled.append(args[0])
        return await ingest_events(*args)

    monkeypatch.setattr(ingest_hot_path, "ingest_events", counted)
    org_id = new_id()
    writer = await api.key(Scope.USAGE_WRITE)

    def event(key: str, **fields: Any) -> dict[str, Any]:
        base = {"org_id": org_id, "metric": "tokens", "quantity": 3, "idempotency_key": key}
        return base | fields

    def named(key: str, name: str = "tokens") -> dict[str, Any]:
        return {"org_id": org_id, "event": name, "idempotency_key": key, "properties": {"value": 2}}

    seen = {"events": [event("seen-1"), event("seen-2", quantity=4), named("seen-3")]}
    assert (await api.client.post(INGEST, headers=writer, json=seen)).json()["accepted"] == 3
    cases: list[tuple[dict[str, str], dict[str, Any]]] = [
        (writer, {"json": seen}),  # duplicates, answered alike
        (writer, {"json": {"events": [event("seen-1", quantity=9)]}}),  # a conflict, refused
        (writer, {"json": {"events": [event("bad", metric="gpu_hours"), event("x", org_id="")]}}),
        (writer, {"json": {"events": [named("n", "gpu.hour"), named("seen-3") | event("m")]}}),
        (await api.key(Scope.USAGE_WRITE, org_id=new_id()), {"json": seen}),  # another org's key
        (await api.key(Scope.QUOTA_CHECK), {"json": seen}),  # no usage:write: 403
        ({"Authorization": "Bearer bk_not-a-key"}, {"json": seen}),
        ({}, {"json": seen}),  # no credentials: 401
        (writer, {"json": {"events": []}}),  # invalid body: 422 from the route
        (writer, {"json": {"events": [event("q", quantity=1.5)]}}),
        (writer, {"content": b"{not json"}),
        ({**writer, "Content-Type": "text/plain"}, {"content": b'{"events": []}'}),
    ]
    statuses = []
    for headers, request in cases:
        hot, _ = await answers(api, route_only, headers, INGEST, **request)
        statuses.append(hot.status_code)
    assert statuses == [200, 200, 200, 200, 403, 403, 401, 401, 422, 422, 422, 422]
    # The first batch, and each case with a valid body and a usage:write key: the route's
    # own function refuses the key for another org.
    assert len(handled) == 6
    # New events: each side its own keys, else the second would see duplicates.
    hot = await api.client.post(INGEST, headers=writer, json={"events": [event("hot-1")]})
    route = await route_only.post(INGEST, headers=writer, json={"events": [event("rte-1")]})
    assert hot.json()["accepted"] == route.json()["accepted"] == 1
    assert hot.content == route.content.replace(b'"rte-1"', b'"hot-1"')
    assert (await api.kernel.summary.period_usage(org_id)).used["tokens"] == 15
