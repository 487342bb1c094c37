"""`make soak`: mixed traffic for a long while (20 minutes by default) against two kernels
and a worker on one PostgreSQL database, then the books checked.

Traffic, spread over both kernels: batches of usage events, quota checks, consumes against
hard limits, thresholds crossed (alerts to a local webhook receiver), and every minute new
orgs whose history starts two months back, which the worker's closer invoices at its next
round. Every process's resident memory is read each minute; the report gives it at the end
of the first minute (warmed up) and at the end. At the end: no answer was an error, every
org's usage is what was sent, each hard limit was consumed exactly, every alert reached the
receiver once, every closed month has its invoice, and `invoices verify` finds nothing.

Usage: python bench/soak.py [--server URL] [--minutes N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from tests.live import KernelServer, kernel_command, start_worker, stop_process, worker_pids
from tests.receivers import http_receiver

from billing_kernel.common.periods import BillingPeriod
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from common import DEFAULT_SERVER, migrated
from loadgen import LoadClient

RESULTS = Path(__file__).parent / "results" / "soak.json"
LIMIT = 400
"""Each hard-limited org's playbook runs."""
NEW_ORGS_EVERY = 60.0
BATCH = 50


@dataclass
class Books:
    """What the load sent and was told, to check the kernel's books against."""

    tokens: Counter[str] = field(default_factory=Counter)
    allowed: Counter[str] = field(default_factory=Counter)
    answers: Counter[int] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def answered(self, kind: str, status: int, body: bytes, expected: int = 200) -> None:
        self.requests[kind] += 1
        self.answers[status] += 1
        if status != expected and len(self.errors) < 20:
            self.errors.append(f"{kind}: {status} {body[:200]!r}")


async def fresh_soak_database(server: str) -> str:
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute('DROP DATABASE IF EXISTS "billing_soak" WITH (FORCE)')
        await admin.execute('CREATE DATABASE "billing_soak"')
    finally:
        await admin.close()
    return f"{server}/billing_soak"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def new_orgs(url: str, count: int, *, backdated: bool, limited: bool = False) -> list[str]:
    """`count` new Starter orgs, soft tokens limit of 50,000 (alerts at 80 % and 100 %);
    `backdated`: their history begins two months ago (a month the closer invoices);
    `limited`: playbook runs hard-limited at LIMIT."""
    start = BillingPeriod.containing(datetime.now(UTC)).previous().previous().start
    clock = Clock(start + timedelta(days=1) if backdated else datetime.now(UTC))
    database = Database(url)
    kernel = Kernel(database, Settings(database_url=url), clock=clock)
    made = []
    try:
        for _ in range(count):
            org_id = f"soak-{random.getrandbits(40):010x}"
            await kernel.orgs.create(org_id, plan_slug="starter")
            soft = LimitOverride(50_000, sets_included=True, mode=Enforcement.SOFT)
            await kernel.quota.set_override(org_id, "tokens", soft)
            if limited:
                hard = LimitOverride(LIMIT, sets_included=True, mode=Enforcement.HARD)
                await kernel.quota.set_override(org_id, "playbook_runs", hard)
            made.append(org_id)
    finally:
        await database.dispose()
    return made


def rss_mib(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[pid] = int(line.split()[1]) / 1024
        except OSError:
            found[pid] = float("nan")
    return found


async def soak(url: str, minutes: float) -> dict[str, object]:
    key = kernel_command(url, "api-keys", "create", "--scopes", "usage:write,quota:check")
    books = Books()
    with http_receiver() as receiver:
        database = Database(url)
        kernel = Kernel(database, Settings(database_url=url))
        await kernel.notifications.add_endpoint(receiver.url)
        orgs = await new_orgs(url, 40, backdated=False)
        limited = await new_orgs(url, 10, backdated=False, limited=True)
        kernels = [KernelServer(url, workers=1) for _ in range(2)]
        for server in kernels:
            server.start(wait=False)
        for server in kernels:
            server.wait_ready(60)
        worker = start_worker(
            url,
            BILLING_CLOSE_PERIODS="true",
            BILLING_CLOSE_INTERVAL_SECONDS="30",
            BILLING_WORKER_POLL_SECONDS="0.5",
        )
        headers = {"Authorization": f"Bearer {key}"}
        clients = [LoadClient(server.url, headers, 8) for server in kernels]
        for client in clients:
            await client.__aenter__()
        stop = asyncio.Event()
        memory: list[tuple[float, dict[str, float]]] = []
        started = time.monotonic()

        def processes() -> dict[str, int]:
            found = {}
            for n, server in enumerate(kernels):
                assert server.process is not None
                for pid in worker_pids(server.process.pid):
                    found[f"kernel {n + 1} (pid {pid})"] = pid
            found[f"worker (pid {worker.pid})"] = worker.pid
            return found

        async def ingest() -> None:
            n = 0
            while not stop.is_set():
                events = []
                for _ in range(BATCH):
                    org_id, quantity = random.choice(orgs), random.randint(1, 40)
                    events.append(
                        {"org_id": org_id, "metric": "tokens", "quantity": quantity,
                         "idempotency_key": f"e{n}"}
                    )  # fmt: skip
                    n += 1
                answer = await clients[n % 2].call(
                    "POST", "/api/v1/usage/events", {"events": events}
                )
                books.answered("ingest", answer.status, answer.body)
                if answer.status == 200:
                    for event, result in zip(events, answer.json()["results"], strict=True):
                        if result["status"] == "accepted":
                            books.tokens[event["org_id"]] += event["quantity"]
                await asyncio.sleep(0.1)

        async def check(lane: int) -> None:
            n = 0
            while not stop.is_set():
                org_id = random.choice(orgs)
                answer = await clients[(n + lane) % 2].call(
                    "POST", "/api/v1/billing/org/check", {"metric": "tokens"}, {"X-Org-Id": org_id}
                )
                books.answered("check", answer.status, answer.body)
                n += 1
                await asyncio.sleep(0.01)

        async def consume(lane: int) -> None:
            n = 0
            while not stop.is_set():
                org_id = random.choice(limited)
                body = {
                    "metric": "playbook_runs",
                    "consume": True,
                    "idempotency_key": f"c{lane}-{n}",
                }
                answer = await clients[n % 2].call(
                    "POST", "/api/v1/billing/org/check", body, {"X-Org-Id": org_id}
                )
                books.answered("consume", answer.status, answer.body)
                if answer.status == 200 and answer.json()["allowed"]:
                    books.allowed[org_id] += 1
                n += 1
                await asyncio.sleep(0.02)

        async def grow() -> None:
            while not stop.is_set():
                orgs.extend(await new_orgs(url, 5, backdated=True))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), NEW_ORGS_EVERY)

        async def watch() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 60)
                named = processes()
                now = rss_mib(list(named.values()))
                memory.append((time.monotonic() - started, {k: now[p] for k, p in named.items()}))
                print(f"{(time.monotonic() - started) / 60:5.1f} min  {dict(books.requests)}  "
                      f"errors {len(books.errors)}", flush=True)  # fmt: skip

        load = [ingest(), check(0), check(1), consume(0), consume(1), grow(), watch()]
        tasks = [asyncio.create_task(work) for work in load]
        await asyncio.sleep(minutes * 60)
        stop.set()
        await asyncio.gather(*tasks)
        for client in clients:
            await client.__aexit__()

        # The books: settle, then compare.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            outbox = await kernel.telemetry.outbox()
            awaiting = await kernel.telemetry.months_awaiting_close()
            if outbox.undispatched == outbox.pending == awaiting == 0:
                break
            await asyncio.sleep(1)
        counted = {
            org_id: (await kernel.summary.period_usage(org_id)).used["tokens"] for org_id in orgs
        }
        runs = {
            org_id: (await kernel.summary.period_usage(org_id)).used["playbook_runs"]
            for org_id in limited
        }
        events = {e.event_id for _, e in await kernel.events.events(org_id=None, limit=1_000_000)}
        received = [r.headers["webhook-id"] for r in receiver.received]
        problems = await kernel.invoices.verify()
        invoices = await kernel.invoices.list_invoices(None, limit=100_000)
        awaiting = await kernel.telemetry.months_awaiting_close()
        stop_process(worker)
        for server in kernels:
            server.stop()
        await database.dispose()
    first, last = memory[0], memory[-1]
    report: dict[str, object] = {
        "minutes": minutes,
        "requests": dict(books.requests),
        "answers": {str(k): v for k, v in books.answers.items()},
        "errors": books.errors,
        "orgs": len(orgs),
        "usage exact": counted == {org_id: books.tokens[org_id] for org_id in orgs},
        "limits exact": runs == {org_id: books.allowed[org_id] for org_id in limited}
        and set(runs.values()) == {LIMIT},
        "alerts": len(events),
        "alerts delivered once": sorted(received) == sorted(events),
        "invoices": len(invoices),
        "months awaiting close": awaiting,
        "invoices verify problems": len(problems),
        "rss MiB at minute 1": {k: round(v, 1) for k, v in first[1].items()},
        "rss MiB at the end": {k: round(v, 1) for k, v in last[1].items()},
        "rss MiB each minute": [
            {"minute": round(at / 60, 1), **{k: round(v, 1) for k, v in rss.items()}}
            for at, rss in memory
        ],
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    parser.add_argument("--minutes", type=float, default=20)
    args = parser.parse_args()
    url = asyncio.run(fresh_soak_database(args.server))
    migrated(url)
    report = asyncio.run(soak(url, args.minutes))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    healthy = (
        not report["errors"]
        and report["usage exact"]
        and report["limits exact"]
        and report["alerts delivered once"]
        and report["months awaiting close"] == 0
        and report["invoices verify problems"] == 0
    )
    raise SystemExit(0 if healthy else 1)


if __name__ == "__main__":
    main()
