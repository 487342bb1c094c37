"""A deployment-wide webhook endpoint is the operator's: a key restricted to one org sees
neither it nor its deliveries of that org's events (nor the receiver's answers in them), and
cannot replay them. On a database of the module's own: the endpoint gets every org's
events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.background import delivery_worker
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from tests.notifications.test_api import ENDPOINTS, attempted, new_org
from tests.receivers import http_receiver
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio

DELIVERIES = "/api/v1/webhooks/deliveries"


@pytest.fixture
async def own_api(module_database_url: str) -> AsyncIterator[Api]:
    database = Database(module_database_url, pool_size=5)
    async with app_for(database) as client:
        yield Api(client, Kernel(database, Settings(database_url=module_database_url)), database)
    await database.dispose()


async def test_a_one_org_key_sees_only_its_orgs_own_endpoints_and_deliveries(
    own_api: Api,
) -> None:
    api = own_api
    org_id = await new_org(api)
    admin = await api.key(Scope.BILLING_ADMIN)
    mine = await api.key(Scope.BILLING_ADMIN, org_id=org_id)
    with http_receiver(503) as operators, http_receiver() as orgs:
        wide = await api.client.post(ENDPOINTS, json={"url": operators.url}, headers=admin)
        own = await api.client.post(ENDPOINTS, json={"url": orgs.url}, headers=mine)
        assert (wide.status_code, own.status_code) == (201, 201)
        await api.kernel.usage.record(org_id, "tokens", 400, idempotency_key="crossing")
        worker = delivery_worker(api.kernel)
        theirs = await attempted(api, worker, {"endpoint_id": wide.json()["id"]}, 1)
        assert "HTTP 503" in theirs["attempts"][0]["error"]  # the operator sees the answer
        await attempted(api, worker, {"endpoint_id": own.json()["id"]}, 1)

    listed = await api.client.get(ENDPOINTS, headers=mine)
    assert [e["id"] for e in listed.json()["data"]] == [own.json()["id"]]
    log = (await api.client.get(DELIVERIES, headers=mine)).json()["data"]
    assert [d["endpoint_id"] for d in log] == [own.json()["id"]]
    by_endpoint = await api.client.get(
        DELIVERIES, params={"endpoint_id": wide.json()["id"]}, headers=mine
    )
    assert by_endpoint.json()["data"] == []
    for method, path in (
        ("GET", f"{DELIVERIES}/{theirs['id']}"),
        ("POST", f"{DELIVERIES}/{theirs['id']}/replay"),
        ("GET", f"{ENDPOINTS}/{wide.json()['id']}"),
        ("DELETE", f"{ENDPOINTS}/{wide.json()['id']}"),
    ):
        answer = await api.client.request(method, path, headers=mine)
        assert answer.status_code == 404, (method, path)
    seen = await api.client.get(f"{DELIVERIES}/{theirs['id']}", headers=admin)
    assert seen.json()["status"] == "pending"  # not replayed, not removed
