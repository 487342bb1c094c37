"""Consumes and reservations against a running `billing-kernel serve` with two worker
processes, on both databases: hundreds of concurrent HTTP callers never take more than is
left."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from tests.conftest import BACKENDS, new_id
from tests.live import KernelServer

pytestmark = [pytest.mark.anyio, pytest.mark.long]

CONSUMERS = 500


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[KernelServer]:
    """One server for the module on each database: each test has an org of its own."""
    kernel = KernelServer(str(request.getfixturevalue(f"{request.param}_url")), workers=2)
    yield kernel.start()
    kernel.stop()


@pytest.fixture
async def kernel(server: KernelServer) -> AsyncIterator[Kernel]:
    """A kernel on the server's database, for arranging what a test needs."""
    database = Database(server.database_url)
    yield Kernel(database, Settings(database_url=server.database_url))
    await database.dispose()


@asynccontextmanager
async def hard_org_client(
    server: KernelServer, kernel: Kernel, left: int
) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A new org with `left` of its 1,000 tokens left, and a client with its key."""
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    override = LimitOverride(1_000, sets_included=True, mode=Enforcement.HARD)
    await kernel.quota.set_override(org_id, "tokens", override)
    _, key = await kernel.api_keys.create([Scope.USAGE_WRITE, Scope.QUOTA_CHECK], org_id=org_id)
    async with httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": f"Bearer {key}"},
        limits=httpx.Limits(max_connections=CONSUMERS),
        timeout=60,
    ) as client:
        before = {  # sent to the server: its clock, not the test's, decides the month
            "org_id": org_id,
            "metric": "tokens",
            "quantity": 1_000 - left,
            "idempotency_key": "before",
        }
        sent = await client.post("/api/v1/usage/events", json={"events": [before]})
        assert sent.json()["accepted"] == 1, sent.text
        yield org_id, client


async def post(client: httpx.AsyncClient, url: str, body: dict[str, object]) -> httpx.Response:
    """A POST as a real client sends it: a connection lost before the answer (hundreds of
    them opening at once) is retried with the same body and idempotency key, which is what
    the key is for: the retry is answered with the first answer, if there was one."""
    for _ in range(5):
        try:
            return await client.post(url, json=body)
        except httpx.TransportError:
            continue
    pytest.fail(f"{url} never reached the kernel")


@pytest.mark.parametrize("left", [1, 37])
async def test_of_500_concurrent_http_consumers_exactly_as_many_as_are_left_get_a_unit(
    server: KernelServer, kernel: Kernel, left: int
) -> None:
    async with hard_org_client(server, kernel, left) as (_, client):

        async def consume(n: int) -> bool:
            body = {"metric": "tokens", "consume": True, "idempotency_key": f"c-{n}"}
            answer = await post(client, "/api/v1/billing/org/check", body)
            assert answer.status_code == 200, answer.text
            decision = answer.json()
            assert decision["consumed"] is decision["allowed"]
            return bool(decision["allowed"])

        allowed = await asyncio.gather(*(consume(n) for n in range(CONSUMERS)))
        # A check reads only: retried like the rest if the server closed an idle connection.
        check = (await post(client, "/api/v1/billing/org/check", {"metric": "tokens"})).json()
    assert sum(allowed) == left
    assert (check["used"], check["remaining"], check["reason"]) == (1_000, 0, "limit_reached")


async def test_of_500_concurrent_http_reservations_only_what_is_left_is_held(
    server: KernelServer, kernel: Kernel
) -> None:
    """37 units left: 37 reservations of one are held, the rest refused; then each held one
    is committed (with 1) or released, concurrently, and usage ends at exactly what was
    committed, with nothing held."""
    async with hard_org_client(server, kernel, 37) as (org_id, client):

        async def reserve(n: int) -> str | None:
            body = {
                "org_id": org_id,
                "metric": "tokens",
                "estimate": 1,
                "idempotency_key": f"r-{n}",
            }
            answer = await post(client, "/api/v1/usage/reservations", body)
            assert answer.status_code == 201, answer.text
            made = answer.json()
            assert (made["status"] == "held") is made["decision"]["allowed"]
            return str(made["id"]) if made["status"] == "held" else None

        held = [rid for rid in await asyncio.gather(*map(reserve, range(CONSUMERS))) if rid]
        during = (await post(client, "/api/v1/billing/org/check", {"metric": "tokens"})).json()

        async def settle(n: int, rid: str) -> int:
            if n % 3 == 0:
                await post(client, f"/api/v1/usage/reservations/{rid}/release", {})
                return 0
            answer = await post(client, f"/api/v1/usage/reservations/{rid}/commit", {"quantity": 1})
            assert answer.json()["status"] == "committed", answer.text
            return 1

        committed = sum(await asyncio.gather(*(settle(n, rid) for n, rid in enumerate(held))))
        after = (await post(client, "/api/v1/billing/org/check", {"metric": "tokens"})).json()
    assert len(held) == 37
    assert (during["used"], during["held"], during["remaining"]) == (963, 37, 0)
    assert (after["used"], after["held"]) == (963 + committed, 0)
    assert committed == 24  # of 37, every third released
