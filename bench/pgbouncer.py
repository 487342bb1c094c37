"""The kernel's database work through PgBouncer in transaction pooling mode
(`?pgbouncer=true`: no prepared statement kept, each parsed where it runs) next to the same
work on a direct connection to the same database, in the same run: quota checks, consumes
and batches of 1,000 events, called on the kernel's services in-process (no HTTP), so that
the figure is what the pooler and the uncached statements cost.

Usage: python bench/pgbouncer.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from tests.pgbouncer import pgbouncer

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.usage.rules import UsageReport
from common import migrated, percentile, row, run_alone

CALLS = 1_000
BATCHES = 20
BATCH = 1_000
CONCURRENCY = 8


async def timed(
    work: Callable[[int], Awaitable[object]], total: int, concurrency: int
) -> list[float]:
    """`work(n)` for n below `total`, `concurrency` at a time: each call's ms."""
    latencies: list[float] = []
    queue = iter(range(total))

    async def worker() -> None:
        for n in queue:
            start = time.perf_counter()
            await work(n)
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def measure(url: str) -> dict[str, float]:
    database = Database(url, pool_size=CONCURRENCY)
    kernel = Kernel(database, Settings(database_url=url))
    org = f"org-{uuid.uuid4().hex[:8]}"
    await kernel.orgs.create(org, plan_slug="starter")
    await kernel.quota.set_override(org, "tokens", 10**12)
    run = uuid.uuid4().hex[:6]
    await timed(lambda n: kernel.quota.check(org, "tokens", 1), 100, 1)  # warm up
    checks = await timed(lambda n: kernel.quota.check(org, "tokens", 1), CALLS, 1)
    consumes = await timed(
        lambda n: kernel.quota.consume(org, "tokens", 1, idempotency_key=f"{run}-c{n}"),
        CALLS,
        CONCURRENCY,
    )
    started = time.perf_counter()
    await timed(
        lambda n: kernel.usage.record_batch(
            [UsageReport(org, "tokens", 1, f"{run}-b{n}-{i}") for i in range(BATCH)]
        ),
        BATCHES,
        2,
    )
    ingest_seconds = time.perf_counter() - started
    await database.dispose()
    return {
        "check p50": percentile(checks, 0.5),
        "consume p50": percentile(consumes, 0.5),
        "ingest": BATCHES * BATCH / ingest_seconds,
    }


def collect(postgres_url: str) -> list[dict[str, Any]]:
    """The rows; `postgres_url` names a database this may migrate and write to."""
    migrated(postgres_url)
    server = postgres_url.rsplit("/", 1)[0]
    with pgbouncer(server, server_connections=CONCURRENCY + 2) as bouncer:
        pooled = bouncer.url_for(postgres_url)
        direct, through = {}, {}
        for _ in range(2):  # alternating rounds, each side warmed by the other's
            for name, value in asyncio.run(measure(postgres_url)).items():
                direct[name] = value if name not in direct else (direct[name] + value) / 2
            for name, value in asyncio.run(measure(pooled)).items():
                through[name] = value if name not in through else (through[name] + value) / 2
    setup = {
        "pooler": "PgBouncer 1.18, pool_mode = transaction",
        "server connections": CONCURRENCY + 2,
        "client": "the kernel's services in-process (no HTTP)",
        "baseline": "the same calls on a direct connection",
    }
    return [
        row(
            "check p50 through PgBouncer vs direct",
            "ms",
            through["check p50"],
            direct["check p50"],
            {**setup, "calls": CALLS, "concurrency": 1},
        ),
        row(
            "consume p50 through PgBouncer vs direct",
            "ms",
            through["consume p50"],
            direct["consume p50"],
            {**setup, "calls": CALLS, "concurrency": CONCURRENCY},
        ),
        row(
            "batched ingestion through PgBouncer vs direct",
            "events/s",
            through["ingest"],
            direct["ingest"],
            {**setup, "batches": BATCHES, "batch": BATCH, "concurrency": 2},
        ),
    ]


if __name__ == "__main__":
    run_alone(collect, __doc__)
