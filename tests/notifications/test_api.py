"""Webhook endpoints, the delivery log and an org's channels over HTTP."""

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.background import delivery_worker
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.worker import DeliveryWorker
from tests.conftest import new_id, row_counts, save_plan
from tests.receivers import http_receiver
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio

ENDPOINTS = "/api/v1/webhooks/endpoints"


async def new_org(api: Api) -> str:
    plan = await save_plan(api.database, datetime.now(UTC))
    org_id = new_id()
    admin = await api.key(Scope.BILLING_ADMIN)
    answer = await api.client.put(
        f"/api/v1/orgs/{org_id}", json={"plan_slug": plan.slug}, headers=admin
    )
    assert answer.status_code == 200, answer.text
    return org_id


async def test_an_endpoint_is_registered_listed_rotated_and_removed(api: Api) -> None:
    org_id = await new_org(api)
    admin = await api.key(Scope.BILLING_ADMIN, org_id=org_id)  # restricted to the org
    body = {"url": "https://example.com/hooks", "event_types": ["usage.threshold_crossed"]}
    created = await api.client.post(ENDPOINTS, json=body, headers=admin)
    assert created.status_code == 201, created.text
    endpoint = created.json()
    assert endpoint["org_id"] == org_id  # the key's org, by default
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["id"].startswith("we_")
    listed = (await api.client.get(ENDPOINTS, headers=admin)).json()
    assert [e["id"] for e in listed["data"]] == [endpoint["id"]]
    assert "secret" not in listed["data"][0]
    one = await api.client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin)
    assert one.json()["event_types"] == ["usage.threshold_crossed"]
    rotated = await api.client.post(f"{ENDPOINTS}/{endpoint['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != endpoint["secret"]
    assert rotated.json()["secret_rotated_until"] is not None
    removed = await api.client.delete(f"{ENDPOINTS}/{endpoint['id']}", headers=admin)
    assert removed.status_code == 204
    gone = await api.client.get(f"{ENDPOINTS}/{endpoint['id']}", headers=admin)
    assert (gone.status_code, gone.json()["code"]) == (404, "endpoint_not_found")


async def test_endpoint_refusals_name_what_is_wrong_and_write_nothing(api: Api) -> None:
    org_id = await new_org(api)
    admin = await api.key(Scope.BILLING_ADMIN)
    other = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    writer = await api.key(Scope.USAGE_WRITE)
    before = await row_counts(api.database)
    for bad, field in (
        ({"url": "ftp://example.com"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://"}, "url"),
        ({"url": "https://example.com", "event_types": ["usage.nope"]}, "event_types"),
        ({"url": "https://example.com", "extra": 1}, "extra"),
        ({}, "url"),
    ):
        answer = await api.client.post(ENDPOINTS, json=bad, headers=admin)
        assert answer.status_code == 422, bad
        assert field in answer.text, bad
    unknown = await api.client.post(
        ENDPOINTS, json={"url": "https://example.com", "org_id": new_id()}, headers=admin
    )
    assert (unknown.status_code, unknown.json()["code"]) == (404, "org_not_found")
    elsewhere = await api.client.post(
        ENDPOINTS, json={"url": "https://example.com", "org_id": org_id}, headers=other
    )
    assert elsewhere.status_code == 403
    assert (await api.client.get(ENDPOINTS, headers=writer)).status_code == 403
    assert await row_counts(api.database) == before


async def test_urls_that_reach_private_networks_are_refused_unless_allowed(
    database: Database,
) -> None:
    """What a one-org key could register before: cloud metadata, a private network, the
    kernel's own host."""
    async with app_for(database, allow_private_webhooks=False) as client:
        api = Api(client, Kernel(database, Settings(database_url=str(database.url))), database)
        org_id = await new_org(api)
        key = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
        before = await row_counts(database)
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://10.0.0.1/hook",
            "http://localhost:6379/",
            "http://0.0.0.0:8000/",
            "https://user:pw@192.168.1.1:8443/hook",
        ):
            answer = await client.post(ENDPOINTS, json={"url": url}, headers=key)
            assert (answer.status_code, answer.json()["code"]) == (422, "url_not_allowed"), url
            assert "address" in answer.json()["detail"], url
            slack = await client.put(
                f"/api/v1/orgs/{org_id}/notifications",
                json={"slack_webhook_url": url, "email": False},
                headers=key,
            )
            assert (slack.status_code, slack.json()["code"]) == (422, "url_not_allowed"), url
        assert await row_counts(database) == before


async def test_another_orgs_endpoint_and_delivery_are_not_found(api: Api) -> None:
    org_id = await new_org(api)
    admin = await api.key(Scope.BILLING_ADMIN)
    created = await api.client.post(
        ENDPOINTS, json={"url": "https://example.com", "org_id": org_id}, headers=admin
    )
    other = await api.key(Scope.BILLING_ADMIN, org_id=new_id())
    endpoint_id = created.json()["id"]
    for method, path in (
        ("GET", f"{ENDPOINTS}/{endpoint_id}"),
        ("DELETE", f"{ENDPOINTS}/{endpoint_id}"),
        ("POST", f"{ENDPOINTS}/{endpoint_id}/rotate-secret"),
        ("GET", "/api/v1/webhooks/deliveries/dlv_0123456789ab0123456789ab"),
        ("POST", "/api/v1/webhooks/deliveries/dlv_0123456789ab0123456789ab/replay"),
    ):
        answer = await api.client.request(method, path, headers=other)
        assert answer.status_code == 404, (method, path)
    assert (await api.client.get(f"{ENDPOINTS}/we_zz", headers=admin)).status_code == 422


async def test_the_delivery_log_shows_attempts_and_a_replay_sends_again(api: Api) -> None:
    org_id = await new_org(api)
    admin = await api.key(Scope.BILLING_ADMIN)
    kernel: Kernel = api.kernel
    with http_receiver(503) as receiver:
        created = await api.client.post(
            ENDPOINTS, json={"url": receiver.url, "org_id": org_id}, headers=admin
        )
        endpoint_id = created.json()["id"]
        await kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(kernel)
        delivery = await attempted(api, worker, {"endpoint_id": endpoint_id}, 1)
        assert delivery["status"] == "pending"
        assert delivery["channel"] == "webhook"
        assert delivery["endpoint_id"] == endpoint_id
        [attempt] = delivery["attempts"]
        assert (attempt["status_code"], attempt["outcome"]) == (503, "retry")
        assert delivery["next_attempt_at"] is not None
        replay = await api.client.post(
            f"/api/v1/webhooks/deliveries/{delivery['id']}/replay", headers=admin
        )
        assert replay.status_code == 202
        one = await attempted(api, worker, {"endpoint_id": endpoint_id}, 2)
        assert one["status"] == "delivered"
        assert [a["status_code"] for a in one["attempts"]] == [503, 200]
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    failed = await api.client.get(
        "/api/v1/webhooks/deliveries", params={"status": "failed", "org_id": org_id}, headers=admin
    )
    assert failed.json() == {"data": [], "next_cursor": None}


async def attempted(
    api: Api, worker: DeliveryWorker, params: dict[str, str], attempts: int
) -> dict[str, Any]:
    """The one delivery `params` select, once it has `attempts` attempts (worker rounds
    until then: the database may hold other tests' events, dispatched first)."""
    admin = await api.key(Scope.BILLING_ADMIN)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = await worker.run_once()
        log = await api.client.get("/api/v1/webhooks/deliveries", params=params, headers=admin)
        found = log.json()["data"]
        assert len(found) <= 1, found
        if found and len(found[0]["attempts"]) >= attempts:
            return dict(found[0])
        if not busy:  # a retry not due yet
            await asyncio.sleep(0.02)
    raise AssertionError(f"no attempt {attempts} was made")


async def test_an_orgs_slack_and_email_settings(api: Api) -> None:
    org_id = await new_org(api)
    admin = await api.key(Scope.BILLING_ADMIN)
    url = f"/api/v1/orgs/{org_id}/notifications"
    default = [  # not "back under"
        "payment.card_needed",
        "payment.failed",
        "quota.blocked",
        "usage.threshold_crossed",
    ]
    assert (await api.client.get(url, headers=admin)).json() == {
        "org_id": org_id,
        "slack_webhook_url": None,
        "email": True,
        "email_events": default,
    }
    body = {"slack_webhook_url": "https://hooks.slack.com/services/T0/B0/x", "email": False}
    answer = await api.client.put(url, json=body, headers=admin)
    assert answer.json() == {"org_id": org_id, **body, "email_events": default}
    every = [
        "payment.card_needed",
        "payment.failed",
        "quota.blocked",
        "usage.threshold_crossed",
        "usage.threshold_resolved",
    ]
    chosen = await api.client.put(url, json={"email_events": every}, headers=admin)
    assert chosen.json()["email_events"] == every
    assert (await api.client.get(url, headers=admin)).json()["email_events"] == every
    none = await api.client.put(url, json={"email_events": []}, headers=admin)
    assert none.json()["email_events"] == []
    wrong = await api.client.put(url, json={"email_events": ["invoice.paid"]}, headers=admin)
    assert (wrong.status_code, "email_events" in wrong.text) == (422, True)
    bad = await api.client.put(url, json={"slack_webhook_url": "javascript:x"}, headers=admin)
    assert (bad.status_code, "slack_webhook_url" in bad.text) == (422, True)
    missing = await api.client.get(f"/api/v1/orgs/{new_id()}/notifications", headers=admin)
    assert missing.status_code == 404
