"""The sandbox clock over HTTP: a deployment admin moves it in dev mode, every answer then
says so (the hot paths' too), and outside dev mode it is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id
from tests.web import Api, app_for

pytestmark = pytest.mark.anyio
CLOCK = "/api/v1/sandbox/clock"


@pytest.fixture
async def dev_api(own_database: Database) -> AsyncIterator[Api]:
    """The API in dev mode on a database of the test's own: the clock is the deployment's."""
    async with app_for(own_database, dev_mode=True) as client:
        settings = Settings(database_url=str(own_database.url))
        yield Api(client, Kernel(own_database, settings), own_database)


async def test_an_admin_moves_the_clock_and_every_answer_says_so(dev_api: Api) -> None:
    admin = await dev_api.key(Scope.BILLING_ADMIN)
    org_id = new_id()
    created = await dev_api.client.put(
        f"/api/v1/orgs/{org_id}", json={"plan_slug": "starter", "status": "active"}, headers=admin
    )
    assert created.status_code == 200, created.text
    assert "billing-sandbox-time" not in created.headers
    shown = (await dev_api.client.get(CLOCK, headers=admin)).json()
    assert (shown["moved"], shown["offset_seconds"]) == (False, 0)

    moved = await dev_api.client.post(f"{CLOCK}/advance", json={"by": "1 month"}, headers=admin)
    assert moved.status_code == 200, moved.text
    answer = moved.json()
    assert answer["moved"] is True
    assert 27 * 86_400 < answer["offset_seconds"] < 32 * 86_400
    this_month = BillingPeriod.containing(datetime.now(UTC)).label
    [closed] = [c for c in answer["closed"] if c["org_id"] == org_id]
    assert (closed["period"], closed["currency"], closed["number"][:4]) == (
        this_month,
        "USD",
        "INV-",
    )
    assert answer["failed"] == []
    sandbox_time = moved.headers["billing-sandbox-time"]
    assert sandbox_time.endswith("Z")

    writer = await dev_api.key(Scope.USAGE_WRITE)  # the ingestion hot path says so too
    event = {"org_id": org_id, "metric": "tokens", "quantity": 5, "idempotency_key": "k"}
    sent = await dev_api.client.post(
        "/api/v1/usage/events", json={"events": [event]}, headers=writer
    )
    assert sent.status_code == 200
    assert "billing-sandbox-time" in sent.headers
    invoices = await dev_api.client.get(
        "/api/v1/billing/org/invoices", headers=admin | {"X-Org-Id": org_id}
    )  # the invoice the move made
    assert [i["number"] for i in invoices.json()["data"]] == [closed["number"]]

    owner = await dev_api.member(org_id, MemberRole.OWNER)
    page = await dev_api.client.get("/app/billing", headers=owner)
    assert page.status_code == 200
    assert "Sandbox clock: it is" in page.text  # the billing page says so too

    back = await dev_api.client.post(CLOCK, json={"to": "2026-01-01T00:00:00Z"}, headers=admin)
    assert (back.status_code, back.json()["code"]) == (422, "invalid_input")
    assert "forward only" in back.json()["detail"]
    reset = await dev_api.client.delete(CLOCK, headers=admin)
    assert (reset.status_code, reset.json()["moved"]) == (200, False)
    assert "billing-sandbox-time" not in reset.headers
    page = await dev_api.client.get("/app/billing", headers=owner)
    assert "Sandbox clock" not in page.text


async def test_only_a_deployment_admin_moves_it(dev_api: Api) -> None:
    for scopes, org in (((Scope.USAGE_WRITE,), None), ((Scope.BILLING_ADMIN,), new_id())):
        headers = await dev_api.key(*scopes, org_id=org)
        answer = await dev_api.client.post(
            f"{CLOCK}/advance", json={"by": "1 day"}, headers=headers
        )
        assert answer.status_code == 403, answer.text
    assert (await dev_api.client.get(CLOCK)).status_code == 401


async def test_outside_dev_mode_the_clock_is_real_time_and_stays_so(api: Api) -> None:
    admin = await api.key(Scope.BILLING_ADMIN)
    for method, path, body in (
        ("POST", f"{CLOCK}/advance", {"by": "1 month"}),
        ("POST", CLOCK, {"to": (datetime.now(UTC) + timedelta(days=1)).isoformat()}),
        ("DELETE", CLOCK, None),
    ):
        refused = await api.client.request(method, path, json=body, headers=admin)
        assert (refused.status_code, refused.json()["code"]) == (403, "sandbox_off"), path
    shown = await api.client.get(CLOCK, headers=admin)
    assert (shown.json()["moved"], "billing-sandbox-time" in shown.headers) == (False, False)
