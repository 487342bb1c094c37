"""The kernel over HTTP next to what PostgreSQL does through asyncpg with no kernel at all,
measured in the same run: batched ingestion (reports of a quantity, and named events that
several meters count), single-event ingestion, duplicates, quota checks, summaries, and the
same after the database has grown.

The kernel's requests come from `loadgen.LoadClient` (keep-alive HTTP/1.1, bodies encoded
before the clock starts), so the generator's own CPU stays small next to the server's.

Usage: python bench/kernel_vs_raw.py [--server URL] [--growth-events N] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from tests.live import KernelServer, connections_per_worker, kernel_command

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.metrics.service import CATALOGUE_TTL_SECONDS
from common import (
    cpu_seconds,
    fresh_database,
    migrated,
    percentile,
    report,
    row,
    server_argument,
)
from loadgen import LoadClient

BATCH = 1_000
ROUNDS = 3
"""Each row's kernel and baseline measured in this many alternating rounds."""
WORKERS = 2
"""One uvicorn worker per core, the documented way to run the kernel for throughput."""


def now() -> datetime:
    return datetime.now(UTC)


class Load:
    """Runs `work` `total` times with `concurrency` in flight; latencies in ms."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.seconds = 0.0
        self.cpu = 0.0

    @classmethod
    async def run(
        cls,
        work: Callable[[int], Awaitable[None]],
        total: int,
        concurrency: int,
        start: int = 0,
    ) -> Load:
        """`work(n)` for n from `start`, `total` times."""
        load = cls()
        queue = iter(range(start, start + total))

        async def worker() -> None:
            for n in queue:
                start = time.perf_counter()
                await work(n)
                load.latencies.append((time.perf_counter() - start) * 1000)

        gc.collect()
        gc.disable()  # the generator's own collections must not show up as the server's latency
        try:
            cpu, started = cpu_seconds(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            load.seconds = time.perf_counter() - started
            load.cpu = cpu_seconds() - cpu
        finally:
            gc.enable()
        return load

    def plus(self, other: Load) -> Load:
        """Both runs as one: their calls, their time and their CPU added up."""
        both = Load()
        both.latencies = self.latencies + other.latencies
        both.seconds = self.seconds + other.seconds
        both.cpu = self.cpu + other.cpu
        return both

    def rate(self, per_call: int = 1) -> float:
        return len(self.latencies) * per_call / self.seconds

    def p(self, fraction: float) -> float:
        return percentile(self.latencies, fraction)


AT = now().isoformat()
"""One event time for the run: a resent key then matches its first payload exactly."""


def events(org: str, count: int, keys: Callable[[int], str]) -> list[dict[str, Any]]:
    at = AT
    return [
        {
            "org_id": org,
            "metric": "tokens",
            "quantity": 1 + n % 13,
            "idempotency_key": keys(n),
            "occurred_at": at,
            "properties": {"model": MODELS[n % len(MODELS)], "feature": "chat"},
        }
        for n in range(count)
    ]


MODELS = ("gpt-5", "claude-opus", "llama-4")
"""Each event carries the model it was spent on, as LLM usage does: stored with it."""


def properties_text(properties: dict[str, Any]) -> str:
    """Properties as stored: one canonical JSON text, as the kernel keeps them."""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


RAW_EVENTS = """
WITH sent AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::bigint[],
                         $5::timestamptz[], $6::timestamptz[], $7::date[], $8::text[])
        AS s (org_id, idempotency_key, metric, quantity, occurred_at, received_at,
              period_start, properties)
), keyed AS (
    INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at)
    SELECT org_id, idempotency_key, occurred_at FROM sent
    ON CONFLICT DO NOTHING RETURNING org_id, idempotency_key
), inserted AS (
    INSERT INTO usage_events (org_id, idempotency_key, event, quantity, occurred_at,
                              received_at, properties)
    SELECT org_id, idempotency_key, metric, quantity, occurred_at, received_at, properties
    FROM sent JOIN keyed USING (org_id, idempotency_key)
    RETURNING org_id, idempotency_key, event, quantity, occurred_at
), lined AS (
    INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at,
                             period_start)
    SELECT org_id, idempotency_key, event, quantity, occurred_at, $7[1] FROM inserted
)
SELECT quantity FROM inserted
"""
RAW_COUNTERS = """
INSERT INTO usage_counters (org_id, period_start, metric, quantity, updated_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (org_id, period_start, metric)
DO UPDATE SET quantity = usage_counters.quantity + excluded.quantity,
              updated_at = excluded.updated_at
"""


async def raw_ingest(pool: asyncpg.Pool, batch: list[dict[str, Any]]) -> None:
    """The kernel's writes, hand-written: events set-based, then the counter, one transaction."""
    moment = now()
    period = BillingPeriod.containing(moment).key
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetch(
            RAW_EVENTS,
            [e["org_id"] for e in batch],
            [e["idempotency_key"] for e in batch],
            [e["metric"] for e in batch],
            [e["quantity"] for e in batch],
            [moment] * len(batch),
            [moment] * len(batch),
            [period] * len(batch),
            [properties_text(e["properties"]) for e in batch],
        )
        if inserted:
            await conn.execute(
                RAW_COUNTERS,
                batch[0]["org_id"],
                period,
                "tokens",
                sum(r["quantity"] for r in inserted),
                moment,
            )


NAMED_METERS = {
    "llm_tokens": {"aggregation": "sum", "value_property": "tokens"},
    "llm_calls": {"aggregation": "count"},
    "gpt_tokens": {"aggregation": "sum", "value_property": "tokens", "filters": {"model": "gpt-5"}},
}
"""What the named-events row's events count toward: every event its tokens and one call, an
event of gpt-5 its tokens once more (2.33 lines an event)."""


def named_events(org: str, count: int, keys: Callable[[int], str]) -> list[dict[str, Any]]:
    at = AT
    return [
        {
            "org_id": org,
            "event": "llm.completion",
            "idempotency_key": keys(n),
            "occurred_at": at,
            "properties": {
                "tokens": 100 + n % 997,
                "model": MODELS[n % len(MODELS)],
                "feature": "chat",
            },
        }
        for n in range(count)
    ]


def named_lines(event: dict[str, Any]) -> list[tuple[str, int]]:
    """The lines NAMED_METERS make of an event, worked out by hand."""
    tokens = event["properties"]["tokens"]
    lines = [("llm_calls", 1), ("llm_tokens", tokens)]
    if event["properties"]["model"] == "gpt-5":
        lines.append(("gpt_tokens", tokens))
    return lines


RAW_NAMED = """
WITH sent AS (
    SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::timestamptz[],
                         $5::text[])
        WITH ORDINALITY AS s (org_id, idempotency_key, event, occurred_at, properties, n)
), keyed AS (
    INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at)
    SELECT org_id, idempotency_key, occurred_at FROM sent
    ON CONFLICT DO NOTHING RETURNING org_id, idempotency_key
), inserted AS (
    INSERT INTO usage_events (org_id, idempotency_key, event, occurred_at, received_at,
                              properties)
    SELECT org_id, idempotency_key, event, occurred_at, $4[1], properties
    FROM sent JOIN keyed USING (org_id, idempotency_key)
    RETURNING org_id, idempotency_key
)
INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at, period_start)
SELECT s.org_id, s.idempotency_key, line.metric, line.quantity, s.occurred_at, $9
FROM unnest($6::bigint[], $7::varchar[], $8::bigint[]) AS line (n, metric, quantity)
JOIN sent s USING (n) JOIN inserted USING (org_id, idempotency_key)
RETURNING metric, quantity
"""
RAW_NAMED_COUNTERS = """
INSERT INTO usage_counters (org_id, period_start, metric, quantity, updated_at)
SELECT $1, $2, metric, quantity, $5 FROM unnest($3::varchar[], $4::bigint[]) AS c (metric, quantity)
ON CONFLICT (org_id, period_start, metric)
DO UPDATE SET quantity = usage_counters.quantity + excluded.quantity,
              updated_at = excluded.updated_at
"""


async def raw_named(pool: asyncpg.Pool, batch: list[dict[str, Any]]) -> None:
    """Named events' writes, hand-written: the events and their lines (the meters applied by
    hand) set-based, then the counters, one transaction."""
    moment = now()
    period = BillingPeriod.containing(moment).key
    lines = [(n, metric, q) for n, e in enumerate(batch, 1) for metric, q in named_lines(e)]
    async with pool.acquire() as conn, conn.transaction():
        written = await conn.fetch(
            RAW_NAMED,
            [e["org_id"] for e in batch],
            [e["idempotency_key"] for e in batch],
            [e["event"] for e in batch],
            [moment] * len(batch),
            [properties_text(e["properties"]) for e in batch],
            [n for n, _, _ in lines],
            [metric for _, metric, _ in lines],
            [q for _, _, q in lines],
            period,
        )
        totals: dict[str, int] = {}
        for line in written:
            totals[line["metric"]] = totals.get(line["metric"], 0) + line["quantity"]
        if totals:
            ordered = sorted(totals.items())
            await conn.execute(
                RAW_NAMED_COUNTERS,
                batch[0]["org_id"],
                period,
                [metric for metric, _ in ordered],
                [q for _, q in ordered],
                moment,
            )


RAW_CONSUME = """
INSERT INTO usage_counters (org_id, period_start, metric, quantity, updated_at)
VALUES ($1, $2, 'tokens', $3, $4)
ON CONFLICT (org_id, period_start, metric)
DO UPDATE SET quantity = usage_counters.quantity + excluded.quantity,
              updated_at = excluded.updated_at
WHERE usage_counters.quantity + usage_counters.reserved + excluded.quantity <= $5
RETURNING quantity
"""
RAW_EVENT = """
WITH keyed AS (
    INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at) VALUES ($1, $2, $4)
    RETURNING org_id, idempotency_key
), inserted AS (
    INSERT INTO usage_events (org_id, idempotency_key, event, quantity, occurred_at,
                              received_at)
    SELECT org_id, idempotency_key, 'tokens', $3, $4, $4 FROM keyed
    RETURNING org_id, idempotency_key
)
INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at, period_start)
SELECT org_id, idempotency_key, 'tokens', $3::bigint, $4::timestamptz, $5::date FROM inserted
"""

INGEST = "/api/v1/usage/events"


class Bench:
    def __init__(self, server: KernelServer, dsn: str, key: str) -> None:
        self.server = server
        self.dsn = dsn
        self.headers = {"Authorization": f"Bearer {key}"}
        self.rows: list[dict[str, Any]] = []
        self.pool: asyncpg.Pool | None = None
        self.database = "PostgreSQL"

    async def __aenter__(self) -> Bench:
        # Idle connections close after a second, so that the baseline's 64 and the kernel's
        # pools never hold more than PostgreSQL's default 100 connections between them.
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=0, max_size=64, max_inactive_connection_lifetime=1.0
        )
        self.database = "PostgreSQL " + await self.pool.fetchval("SHOW server_version")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.pool is not None
        await self.pool.close()

    def http(self, connections: int) -> LoadClient:
        """Fresh connections for each measurement: idle ones are closed by the server's
        keep-alive timeout between phases."""
        return LoadClient(self.server.url, self.headers, connections)

    async def pair(
        self,
        http: LoadClient,
        kernel: Callable[[int], Awaitable[None]],
        raw: Callable[[int], Awaitable[None]],
        total: int,
        concurrency: int,
        warmup: int = 0,
    ) -> tuple[Load, Load]:
        """The kernel and the baseline at the same concurrency, in ROUNDS alternating rounds
        (kernel, baseline, kernel, ...), each side's rounds added up: a change of the
        machine's speed during the run (another tenant, autovacuum, a checkpoint) then
        falls on both sides alike. Each side's connections are opened before its clock
        starts. With `warmup`, read-only work runs that many times untimed first, so that
        statements are prepared on every connection in use."""
        assert self.pool is not None
        pool = self.pool
        await asyncio.gather(*(http.call("GET", "/readyz") for _ in range(concurrency)))
        await Load.run(kernel, warmup, concurrency)
        await asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(concurrency)))
        await Load.run(raw, warmup, concurrency)
        k, r = Load(), Load()
        for round_ in range(ROUNDS):
            start, end = total * round_ // ROUNDS, total * (round_ + 1) // ROUNDS
            k = k.plus(await Load.run(kernel, end - start, concurrency, start))
            r = r.plus(await Load.run(raw, end - start, concurrency, start))
        return k, r

    def split(self) -> list[int]:
        """The client connections each server worker holds: how the operating system spread
        them over the workers' sockets."""
        assert self.server.process is not None
        return connections_per_worker(self.server.process.pid, self.server.port)

    async def settle(self) -> None:
        """Vacuum, analyze and checkpoint after writing, so that autovacuum and checkpoint
        writes do not land on whichever side happens to be measured next."""
        assert self.pool is not None
        await self.pool.execute("VACUUM ANALYZE")
        await self.pool.execute("CHECKPOINT")

    async def org(self) -> str:
        org = f"bench-{uuid.uuid4().hex[:10]}"
        async with self.http(1) as http:
            answer = await http.call(
                "POST", INGEST, {"events": events(org, 1, lambda n: f"seed-{n}")}
            )
        assert answer.status == 200, answer.body
        return org

    def add(
        self, name: str, unit: str, kernel: float, baseline: float, setup: dict[str, Any]
    ) -> None:
        self.rows.append(
            row(
                name,
                unit,
                kernel,
                baseline,
                {
                    "database": self.database,
                    "server_workers": self.server.workers,
                    "client": "loadgen.LoadClient, keep-alive HTTP/1.1",
                    **setup,
                },
            )
        )

    async def hard_limit(self, org: str, included: int) -> None:
        """Give the org a hard limit of its own, with a 10 % grace, on tokens."""
        async with self.http(1) as http:
            answer = await http.call(
                "PUT",
                f"/api/v1/orgs/{org}/limits/tokens",
                {"included_quantity": included, "mode": "hard", "grace_percent": 10},
            )
        assert answer.status == 200, answer.body

    async def batched(
        self, label: str = "", batches: int = 60, concurrency: int = 2, hard: bool = False
    ) -> None:
        org_k, org_r = await self.org(), await self.org()
        if hard:  # crossed by the third batch: every write after judges the crossing anew
            await self.hard_limit(org_k, 2 * BATCH * 7)
        k, r = await self.accepted_batches(events, raw_ingest, org_k, org_r, batches, concurrency)
        self.add(
            f"batched ingestion{label}",
            "events/s",
            k.rate(BATCH),
            r.rate(BATCH),
            {
                "batch": BATCH,
                "events": batches * BATCH,
                "concurrency": concurrency,
                "generator_cpu_s": round(k.cpu, 2),
            },
        )
        self.last_batched = k

    async def define_named_meters(self) -> None:
        """NAMED_METERS, defined through the API; every worker sees them once its catalogue
        is read again (CATALOGUE_TTL_SECONDS), which is waited for."""
        async with self.http(1) as http:
            for key, meter in NAMED_METERS.items():
                answer = await http.call(
                    "PUT",
                    f"/api/v1/billing/metrics/{key}",
                    {"name": key, "unit": "tokens", "events": ["llm.completion"], **meter},
                )
                assert answer.status in (200, 201), answer.body
        await asyncio.sleep(CATALOGUE_TTL_SECONDS + 0.5)

    async def named(self, batches: int = 60, concurrency: int = 2) -> None:
        """Batches of named events with properties, each counted by two or three meters
        (NAMED_METERS), against the same writes by hand."""
        await self.define_named_meters()
        org_k, org_r = await self.org(), await self.org()
        k, r = await self.accepted_batches(
            named_events, raw_named, org_k, org_r, batches, concurrency
        )
        self.add(
            "batched ingestion, named events (several meters each)",
            "events/s",
            k.rate(BATCH),
            r.rate(BATCH),
            {
                "batch": BATCH,
                "events": batches * BATCH,
                "lines_per_batch": sum(
                    len(named_lines(e)) for e in named_events(org_r, BATCH, str)
                ),
                "meters": sorted(NAMED_METERS),
                "concurrency": concurrency,
                "generator_cpu_s": round(k.cpu, 2),
            },
        )

    async def accepted_batches(
        self,
        make: Callable[[str, int, Callable[[int], str]], list[dict[str, Any]]],
        raw: Callable[[asyncpg.Pool, list[dict[str, Any]]], Awaitable[None]],
        org_k: str,
        org_r: str,
        batches: int,
        concurrency: int,
    ) -> tuple[Load, Load]:
        """`batches` batches of BATCH events made by `make`, of new keys: sent to the kernel
        for `org_k` (every event must be accepted), and written by `raw` for `org_r`."""
        await self.settle()
        bodies_r = [make(org_r, BATCH, lambda n, b=b: f"{b}-{n}") for b in range(batches)]
        assert self.pool is not None
        pool = self.pool
        async with self.http(concurrency) as http:
            requests = [
                http.encode(
                    "POST", INGEST, {"events": make(org_k, BATCH, lambda n, b=b: f"{b}-{n}")}
                )
                for b in range(batches)
            ]

            async def kernel(n: int) -> None:
                answer = await http.send(requests[n])
                assert answer.json()["accepted"] == BATCH, answer.body[:300]

            return await self.pair(
                http, kernel, lambda n: raw(pool, bodies_r[n]), batches, concurrency
            )

    async def duplicates(self, batches: int = 40) -> None:
        org_k, org_r = await self.org(), await self.org()
        half = BATCH // 2

        def body(org: str, b: int) -> list[dict[str, Any]]:  # half of each batch seen before
            return events(org, BATCH, lambda n: f"{b}-{n}" if n < half else f"{b + 1}-{n}")

        assert self.pool is not None
        pool = self.pool
        rs = [body(org_r, b) for b in range(batches)]
        async with self.http(2) as http:
            for b in range(batches):  # the first halves, already stored
                first = {"events": events(org_k, half, lambda n, b=b: f"{b}-{n}")}
                assert (await http.call("POST", INGEST, first)).status == 200
                await raw_ingest(pool, events(org_r, half, lambda n, b=b: f"{b}-{n}"))
            requests = [
                http.encode("POST", INGEST, {"events": body(org_k, b)}) for b in range(batches)
            ]
            await self.settle()

            async def kernel(n: int) -> None:
                answer = await http.send(requests[n])
                assert answer.json()["duplicates"] == half, answer.body[:300]

            k, r = await self.pair(http, kernel, lambda n: raw_ingest(pool, rs[n]), batches, 2)
        self.add(
            "duplicate-heavy ingestion (half seen)",
            "events/s",
            k.rate(BATCH),
            r.rate(BATCH),
            {
                "batch": BATCH,
                "events": batches * BATCH,
                "concurrency": 2,
                "generator_cpu_s": round(k.cpu, 2),
            },
        )

    async def single(self, total: int = 3_000, concurrency: int = 32) -> None:
        org_k, org_r = await self.org(), await self.org()
        await self.settle()
        assert self.pool is not None
        pool = self.pool
        async with self.http(concurrency) as http:
            requests = [
                http.encode("POST", INGEST, {"events": events(org_k, 1, lambda _, n=n: f"s-{n}")})
                for n in range(total)
            ]

            async def kernel(n: int) -> None:
                answer = await http.send(requests[n])
                assert answer.json()["accepted"] == 1, answer.body

            k, r = await self.pair(
                http,
                kernel,
                lambda n: raw_ingest(pool, events(org_r, 1, lambda _: f"s-{n}")),
                total,
                concurrency,
            )
        self.add(
            "single-event ingestion",
            "events/s",
            k.rate(),
            r.rate(),
            {
                "events": total,
                "concurrency": concurrency,
                "requests": total,
                "generator_cpu_s": round(k.cpu, 2),
            },
        )

    async def checks(
        self, label: str = "", levels: tuple[int, ...] = (1, 16, 64), total: int = 2_000
    ) -> dict[int, Load]:
        org = await self.org()
        await self.settle()
        period = BillingPeriod.containing(now()).key
        assert self.pool is not None
        pool = self.pool
        http = self.http(1)  # to encode with; each level opens its own connections below
        request = http.encode(
            "POST",
            "/api/v1/billing/org/check",
            {"metric": "tokens", "amount": 10},
            headers={"X-Org-Id": org},
        )

        async def raw(_: int) -> None:
            async with pool.acquire() as conn:
                await conn.fetchval(
                    "SELECT quantity FROM usage_counters WHERE org_id = $1 AND period_start = $2"
                    " AND metric = $3",
                    org,
                    period,
                    "tokens",
                )

        health = http.encode("GET", "/healthz")
        loads = {}
        for concurrency in levels:
            # One keep-alive connection per concurrent client, as the clients of a service hold.
            async with self.http(concurrency) as clients:

                async def kernel(_: int, clients: LoadClient = clients) -> None:
                    answer = await clients.send(request)
                    assert answer.status == 200, answer.body

                async def floor(_: int, clients: LoadClient = clients) -> None:
                    answer = await clients.send(health)  # an HTTP answer with no work behind it
                    assert answer.status == 200, answer.body

                k, r = await self.pair(clients, kernel, raw, total, concurrency, warmup=total // 10)
                split = self.split()  # now that every connection has been accepted and served
                bare = await Load.run(floor, total, concurrency)
            loads[concurrency] = k
            setup = {
                "requests": total,
                "concurrency": concurrency,
                "connections_per_worker": split,
                "generator_cpu_s": round(k.cpu, 2),
            }
            self.add(f"quota check p50, c={concurrency}{label}", "ms", k.p(0.5), r.p(0.5), setup)
            self.add(f"quota check p99, c={concurrency}{label}", "ms", k.p(0.99), r.p(0.99), setup)
            self.add(
                f"quota check rate, c={concurrency}{label}", "req/s", k.rate(), r.rate(), setup
            )
            self.add(
                f"HTTP floor p99 (GET /healthz), c={concurrency}{label}",
                "ms",
                bare.p(0.99),
                r.p(0.99),
                setup | {"note": "uvicorn + FastAPI answering with no database work"},
            )
        return loads

    async def consumes(
        self, levels: tuple[int, ...] = (1, 16), total: int = 2_000, orgs: tuple[int, ...] = (1, 16)
    ) -> None:
        """Decide-and-record over HTTP (`"consume": true`) against its writes done by hand in
        one transaction: the conditional counter upsert (`... WHERE quantity + reserved + n <=
        ceiling RETURNING quantity`) and the event's insert. Every consume is allowed (the
        hard limit is far off): the common case. With one org, every consume of the metric
        waits for the same counter row's lock, on both sides; with 16, each consume goes to
        the next org in turn."""
        for spread in orgs:
            for concurrency in levels:
                if spread == 1 or concurrency > 1:
                    await self.consume_level(concurrency, total, spread)

    async def consume_level(self, concurrency: int, total: int, spread: int) -> None:
        period = BillingPeriod.containing(now()).key
        assert self.pool is not None
        pool = self.pool
        kernel_orgs = [await self.org() for _ in range(spread)]
        raw_orgs = [await self.org() for _ in range(spread)]
        for org in kernel_orgs:
            await self.hard_limit(org, 10**12)
        await self.settle()
        http = self.http(1)  # to encode with
        requests = iter(
            [
                http.encode(
                    "POST",
                    "/api/v1/billing/org/check",
                    {"metric": "tokens", "amount": 7, "consume": True, "idempotency_key": f"c-{n}"},
                    headers={"X-Org-Id": kernel_orgs[n % spread]},
                )
                for n in range(total + total // 10)
            ]
        )
        raw_keys = iter(range(total + total // 10))

        async def raw(_: int) -> None:
            n, moment = next(raw_keys), now()
            org = raw_orgs[n % spread]
            async with pool.acquire() as conn, conn.transaction():
                total_now = await conn.fetchval(RAW_CONSUME, org, period, 7, moment, 10**12)
                assert total_now is not None
                await conn.execute(RAW_EVENT, org, f"c-{n}", 7, moment, period)

        health = http.encode("GET", "/healthz")
        async with self.http(concurrency) as clients:

            async def kernel(_: int) -> None:
                answer = await clients.send(next(requests))
                assert answer.status == 200, answer.body
                assert answer.json()["consumed"] is True, answer.body[:300]

            async def floor(_: int) -> None:
                answer = await clients.send(health)
                assert answer.status == 200, answer.body

            k, r = await self.pair(clients, kernel, raw, total, concurrency, warmup=total // 10)
            bare = await Load.run(floor, total, concurrency)
        setup = {
            "requests": total,
            "concurrency": concurrency,
            "orgs": spread,
            "baseline": "conditional counter upsert + event insert, one transaction, asyncpg",
            "generator_cpu_s": round(k.cpu, 2),
        }
        label = f"c={concurrency}, {spread} org" + ("s" if spread > 1 else "")
        self.add(f"consume p50, {label}", "ms", k.p(0.5), r.p(0.5), setup)
        self.add(f"consume p99, {label}", "ms", k.p(0.99), r.p(0.99), setup)
        self.add(f"consume rate, {label}", "req/s", k.rate(), r.rate(), setup)
        self.add(
            f"consume p99 / HTTP floor p99, {label}",
            "ms",
            k.p(0.99),
            bare.p(0.99),
            setup | {"note": "baseline: GET /healthz at the same concurrency"},
        )

    async def summary(self, total: int = 1_000) -> None:
        org = await self.org()
        await self.settle()
        period: date = BillingPeriod.containing(now()).key
        assert self.pool is not None
        pool = self.pool
        http = self.http(1)
        request = http.encode("GET", "/api/v1/billing/org/summary", headers={"X-Org-Id": org})

        async def kernel(_: int) -> None:
            answer = await http.send(request)
            assert answer.status == 200, answer.body

        async def raw(_: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                state = await conn.fetchrow(
                    "SELECT * FROM org_billing_state WHERE org_id = $1", org
                )
                await conn.fetchrow(
                    "SELECT * FROM plans JOIN plan_versions v ON v.plan_slug = plans.slug "
                    "WHERE slug = $1 AND v.version = $2",
                    state["plan_slug"],
                    state["plan_version"],
                )
                await conn.fetch(
                    "SELECT * FROM plan_metrics WHERE plan_slug = $1 AND version = $2",
                    state["plan_slug"],
                    state["plan_version"],
                )
                await conn.fetch("SELECT * FROM metrics ORDER BY position")
                await conn.fetch(
                    "SELECT metric, quantity FROM usage_counters "
                    "WHERE org_id = $1 AND period_start = $2",
                    org,
                    period,
                )
                await conn.fetchval("SELECT count(*) FROM org_members WHERE org_id = $1", org)
                await conn.fetch("SELECT * FROM org_limit_overrides WHERE org_id = $1", org)

        async with http:
            k, r = await self.pair(http, kernel, raw, total, 1, warmup=total // 10)
        setup = {"requests": total, "concurrency": 1, "generator_cpu_s": round(k.cpu, 2)}
        self.add("summary p50", "ms", k.p(0.5), r.p(0.5), setup)
        self.add("summary p99", "ms", k.p(0.99), r.p(0.99), setup)

    async def entitlements(self, total: int = 1_000) -> None:
        """An org's entitlements (its plan's features after its own, every metric's terms)
        over HTTP, next to a quota check of the same org over HTTP, in the same run: what a
        product pays to read everything an org may use, against one decision."""
        org = await self.org()
        await self.settle()
        http = self.http(1)
        read = http.encode("GET", "/api/v1/billing/org/entitlements", headers={"X-Org-Id": org})
        check = http.encode(
            "POST",
            "/api/v1/billing/org/check",
            {"metric": "tokens", "amount": 10},
            headers={"X-Org-Id": org},
        )

        async def kernel(_: int) -> None:
            answer = await http.send(read)
            assert answer.status == 200, answer.body

        async def baseline(_: int) -> None:
            answer = await http.send(check)
            assert answer.status == 200, answer.body

        async with http:
            k, r = await self.pair(http, kernel, baseline, total, 1, warmup=total // 10)
        setup = {
            "requests": total,
            "concurrency": 1,
            "generator_cpu_s": round(k.cpu, 2),
            "baseline": "POST /api/v1/billing/org/check for the same org, same connection",
        }
        self.add("entitlements read p50, c=1 (vs quota check)", "ms", k.p(0.5), r.p(0.5), setup)
        self.add("entitlements read p99, c=1 (vs quota check)", "ms", k.p(0.99), r.p(0.99), setup)


async def grow(dsn: str, total: int, orgs: int) -> float:
    """Store `total` events over `orgs` orgs (and their counters) with set-based SQL."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO orgs (org_id, created_at)
            SELECT 'grown-' || n, now() FROM generate_series(1, $1) n ON CONFLICT DO NOTHING
        """,
            orgs,
        )
        await conn.execute(
            """
            WITH keyed AS (
                INSERT INTO usage_event_keys (org_id, idempotency_key, occurred_at)
                SELECT 'grown-' || (n % $2 + 1), 'g-' || n, now() - (n % 30) * interval '1 day'
                FROM generate_series(1, $1) n ON CONFLICT DO NOTHING
                RETURNING org_id, idempotency_key, occurred_at
            ), grown AS (
                INSERT INTO usage_events (org_id, idempotency_key, event, quantity,
                                          occurred_at, received_at)
                SELECT org_id, idempotency_key, 'tokens', 1 + length(idempotency_key) % 13,
                       occurred_at, now()
                FROM keyed
                RETURNING org_id, idempotency_key, quantity, occurred_at
            )
            INSERT INTO usage_lines (org_id, idempotency_key, metric, quantity, occurred_at,
                                     period_start)
            SELECT org_id, idempotency_key, 'tokens', quantity, occurred_at,
                   date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date
            FROM grown
        """,
            total,
            orgs,
        )
        await conn.execute("""
            INSERT INTO usage_counters (org_id, period_start, metric, quantity, updated_at)
            SELECT org_id, period_start, metric, sum(quantity), now() FROM usage_lines
            WHERE org_id LIKE 'grown-%' GROUP BY org_id, period_start, metric
            ON CONFLICT (org_id, period_start, metric) DO UPDATE SET quantity = excluded.quantity
        """)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def run(dsn: str, growth_events: int, workers: int) -> list[dict[str, Any]]:
    """The rows, measured on `dsn`, an empty database."""
    await asyncio.to_thread(migrated, dsn)
    key = await asyncio.to_thread(
        kernel_command,
        dsn,
        "api-keys",
        "create",
        "--scopes",
        "usage:write,quota:check,billing:admin",
    )
    server = await asyncio.to_thread(KernelServer(dsn, workers=workers).start)
    try:
        async with Bench(server, dsn, key) as bench:
            await bench.batched()
            empty_batched = bench.last_batched
            await bench.batched(label=" (hard limit, crossed)", hard=True)
            await bench.named()
            await bench.duplicates()
            await bench.single()
            empty_checks = await bench.checks()
            await bench.consumes()
            await bench.summary()
            await bench.entitlements()
            if growth_events:
                seconds = await grow(dsn, growth_events, 10_000)
                print(f"stored {growth_events:,} events over 10,000 orgs in {seconds:.0f} s")
                await bench.batched(label=" (grown)")
                grown_checks = await bench.checks(label=" (grown)", levels=(16,))
                setup = {"stored_events": growth_events, "stored_orgs": 10_000}
                bench.add(
                    "growth: batched ingestion, grown / empty",
                    "events/s",
                    bench.last_batched.rate(BATCH),
                    empty_batched.rate(BATCH),
                    setup,
                )
                bench.add(
                    "growth: check p99 c=16, empty / grown",
                    "ms",
                    empty_checks[16].p(0.99),
                    grown_checks[16].p(0.99),
                    setup,
                )
            return bench.rows
    except BaseException:
        server.stop()
        assert server.process is not None
        assert server.process.stderr is not None
        print("the kernel's log:\n" + server.process.stderr.read()[-4000:])
        raise
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    arguments(parser)
    args = parser.parse_args()
    dsn = asyncio.run(fresh_database(args.server))
    report(asyncio.run(run(dsn, args.growth_events, args.workers)))


def arguments(parser: argparse.ArgumentParser) -> None:
    server_argument(parser)
    parser.add_argument(
        "--growth-events", type=int, default=10_000_000, help="events stored for the growth rows"
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help="kernel server processes")


if __name__ == "__main__":
    main()
