"""Consumes against a running `billing-kernel serve` with two worker processes, on both
databases: hundreds of concurrent HTTP consumers never take more than is left."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from billing_kernel.auth.rules import Scope
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from tests.conftest import new_id
from tests.live import KernelServer

pytestmark = pytest.mark.anyio

CONSUMERS = 500


@pytest.fixture
def server(database_url: str) -> Iterator[KernelServer]:
    kernel = KernelServer(database_url, workers=2).start()
    yield kernel
    kernel.stop()


@pytest.mark.parametrize("left", [1, 37])
async def test_of_500_concurrent_http_consumers_exactly_as_many_as_are_left_get_a_unit(
    server: KernelServer, kernel: Kernel, left: int
) -> None:
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    override = LimitOverride(1_000, sets_included=True, mode=Enforcement.HARD)
    await kernel.quota.set_override(org_id, "tokens", override)
    _, key = await kernel.api_keys.create([Scope.USAGE_WRITE, Scope.QUOTA_CHECK], org_id=org_id)
    limits = httpx.Limits(max_connections=CONSUMERS)
    async with httpx.AsyncClient(
        base_url=server.url,
        headers={"Authorization": f"Bearer {key}"},
        limits=limits,
        timeout=60,
    ) as client:
        used = {
            "events": [
                {
                    "org_id": org_id,
                    "metric": "tokens",
                    "quantity": 1_000 - left,
                    "idempotency_key": "before",
                }
            ]
        }
        assert (await client.post("/api/v1/usage/events", json=used)).status_code == 200

        async def consume(n: int) -> bool:
            """One consumer, as a real client behaves: a connection lost before the answer
            (hundreds of them opening at once) is retried with the same key, which is what
            the key is for: the retry is answered with the first decision, if there was one."""
            body = {"metric": "tokens", "consume": True, "idempotency_key": f"c-{n}"}
            for _ in range(5):
                try:
                    answer = await client.post("/api/v1/billing/org/check", json=body)
                    break
                except httpx.TransportError:
                    continue
            else:
                pytest.fail(f"consumer {n} never reached the kernel")
            assert answer.status_code == 200, answer.text
            decision = answer.json()
            assert decision["consumed"] is decision["allowed"]
            return bool(decision["allowed"])

        allowed = await asyncio.gather(*(consume(n) for n in range(CONSUMERS)))
        check = (await client.post("/api/v1/billing/org/check", json={"metric": "tokens"})).json()
    assert sum(allowed) == left
    assert (check["used"], check["remaining"], check["reason"]) == (1_000, 0, "limit_reached")
