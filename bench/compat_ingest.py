"""Ingestion through the incumbents' protocols next to the kernel's own, in the same run and
on the same server: batches of 1,000 events as Lago's, OpenMeter's and Polar's clients batch
them, and Stripe's meter events (one per request, as its API takes them) next to the native
single-event request. The ratio is the protocol's rate over the native one: what speaking the
protocol costs (parsing its shape, resolving aliases, recording the batch all or nothing).

Usage: python bench/compat_ingest.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from tests.live import KernelServer, kernel_command

from common import migrated, row, run_alone
from kernel_vs_raw import AT, BATCH, INGEST, WORKERS, Load, events
from loadgen import LoadClient

BATCHES = 20
SINGLES = 2_000


def lago(org: str, keys: list[str]) -> dict[str, Any]:
    return {
        "events": [
            {
                "transaction_id": key,
                "external_subscription_id": org,
                "code": "tokens",
                "timestamp": None,
                "precise_total_amount_cents": None,
                "properties": {"value": 1 + n % 13, "model": "gpt-5"},
            }
            for n, key in enumerate(keys)
        ]
    }


def cloud_events(org: str, keys: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "id": key,
            "source": "bench",
            "specversion": "1.0",
            "type": "tokens",
            "subject": org,
            "time": AT,
            "data": {"value": 1 + n % 13, "model": "gpt-5"},
        }
        for n, key in enumerate(keys)
    ]


def polar(org: str, keys: list[str]) -> dict[str, Any]:
    return {
        "events": [
            {
                "name": "tokens",
                "external_customer_id": org,
                "external_id": key,
                "metadata": {"value": 1 + n % 13, "model": "gpt-5"},
            }
            for n, key in enumerate(keys)
        ]
    }


PROTOCOLS: dict[str, tuple[str, Callable[[str, list[str]], Any], dict[str, str]]] = {
    "Lago": ("/compat/lago/api/v1/events/batch", lago, {}),
    "OpenMeter": (
        "/compat/openmeter/api/v1/events",
        cloud_events,
        {"Content-Type": "application/cloudevents-batch+json"},
    ),
    "Polar": ("/compat/polar/v1/events/ingest", polar, {}),
}


async def measure(url: str, key: str) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key}"}
    rows = []

    def keys(batch: int) -> list[str]:
        return [f"{batch}-{n}" for n in range(BATCH)]

    async with LoadClient(url, headers, 2) as http:
        for name, (path, shape, extra) in PROTOCOLS.items():
            org_n, org_p = (f"bench-{uuid.uuid4().hex[:10]}" for _ in range(2))
            native = [
                http.encode(
                    "POST", INGEST, {"events": events(org_n, BATCH, lambda n, b=b: f"{b}-{n}")}
                )
                for b in range(BATCHES)
            ]
            protocol = [
                http.encode(
                    "POST",
                    path,
                    headers={
                        **extra,
                        "Content-Type": extra.get("Content-Type", "application/json"),
                    },
                    content=_json(shape(org_p, keys(b))),
                )
                for b in range(BATCHES)
            ]
            for warm in (native[0], protocol[0]):  # creates the orgs; prepares statements
                answer = await http.send(warm)
                assert answer.status in (200, 204), answer.body[:300]
            n = await Load.run(lambda i, r=native: _ok(http, r[i]), BATCHES, 2)
            p = await Load.run(lambda i, r=protocol: _ok(http, r[i]), BATCHES, 2)
            rows.append(
                row(
                    f"{name} batched ingestion, against native",
                    "events/s",
                    p.rate(BATCH),
                    n.rate(BATCH),
                    {"batch": BATCH, "events": BATCHES * BATCH, "concurrency": 2},
                )
            )
    async with LoadClient(url, headers, 16) as http:
        org_n, org_p = (f"bench-{uuid.uuid4().hex[:10]}" for _ in range(2))
        native = [
            http.encode("POST", INGEST, {"events": events(org_n, 1, lambda _, i=i: f"s-{i}")})
            for i in range(SINGLES)
        ]
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        stripe = [
            http.encode(
                "POST",
                "/compat/stripe/v1/billing/meter_events",
                headers=form,
                content=urlencode(
                    {
                        "event_name": "tokens",
                        "payload[stripe_customer_id]": org_p,
                        "payload[value]": str(1 + i % 13),
                        "identifier": f"s-{i}",
                    }
                ).encode(),
            )
            for i in range(SINGLES)
        ]
        for warm in (native[0], stripe[0]):
            assert (await http.send(warm)).status == 200
        n = await Load.run(lambda i: _ok(http, native[i]), SINGLES, 16)
        p = await Load.run(lambda i: _ok(http, stripe[i]), SINGLES, 16)
        rows.append(
            row(
                "Stripe meter events, against native single events",
                "events/s",
                p.rate(),
                n.rate(),
                {"events": SINGLES, "concurrency": 16},
            )
        )
    return rows


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


async def _ok(http: LoadClient, request: bytes) -> None:
    answer = await http.send(request)
    assert answer.status in (200, 204), answer.body[:300]


def collect(dsn: str) -> list[dict[str, Any]]:
    """The rows, on a kernel serving `dsn` (migrated here) with WORKERS workers."""
    migrated(dsn)
    key = kernel_command(dsn, "api-keys", "create", "--scopes", "usage:write")
    server = KernelServer(dsn, workers=WORKERS).start()
    try:
        rows = asyncio.run(measure(server.url, key))
    finally:
        server.stop()
    for r in rows:
        r["setup"] |= {"database": "PostgreSQL", "server_workers": WORKERS}
    return rows


if __name__ == "__main__":
    run_alone(collect, __doc__)
