"""Alert latency: from the start of the usage write that crosses a threshold to the moment
the webhook receiver has the signed event, through the outbox and the delivery worker
(running beside the writer, as `make run` runs it), next to a signed POST of the same body
sent straight to the same receiver, in the same run, on SQLite and PostgreSQL.

Usage: python bench/alert_latency.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from billing_kernel.background import delivery_worker
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.rules import new_secret, webhook_headers
from common import on_both_databases, percentile_rows, run_alone

ALERTS = 100


class Arrivals:
    """When each webhook-id reached the receiver (perf_counter)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.changed = threading.Condition()

    def wait_for(self, message_id: str, timeout: float = 30) -> float:
        with self.changed:
            self.changed.wait_for(lambda: message_id in self.at, timeout)
        return self.at[message_id]


def receiver(arrivals: Arrivals) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            now = time.perf_counter()
            self.send_response(204)
            self.end_headers()
            with arrivals.changed:
                arrivals.at[self.headers["webhook-id"]] = now
                arrivals.changed.notify_all()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


async def measure(url: str) -> tuple[list[float], list[float]]:
    arrivals = Arrivals()
    server = receiver(arrivals)
    hook = f"http://127.0.0.1:{server.server_port}/hook"
    database = Database(url)
    # The receiver is on this machine: allowed, as `make run` allows it.
    kernel = Kernel(database, Settings(database_url=url, allow_private_webhooks=True))
    org_ids = [f"org-{uuid.uuid4().hex[:10]}" for _ in range(ALERTS + 5)]
    for org_id in org_ids:
        await kernel.orgs.create(org_id, plan_slug="starter")  # 1,000,000 tokens
        await kernel.notifications.add_endpoint(hook, org_id=org_id)
    worker = delivery_worker(kernel)
    delivering = asyncio.create_task(worker.run())
    latencies, direct = [], []
    secret, body = new_secret(), b'{"type":"usage.threshold_crossed","data":{}}'
    async with httpx.AsyncClient() as client:
        for n, org_id in enumerate(org_ids):
            start = time.perf_counter()
            await kernel.usage.record(org_id, "tokens", 800_000, idempotency_key="crossing")
            [(_, event)] = await kernel.events.events(org_id=org_id)
            arrived = await asyncio.to_thread(arrivals.wait_for, event.event_id)
            direct_id = f"direct-{n}"
            direct_start = time.perf_counter()
            headers = webhook_headers([secret], direct_id, int(time.time()), body)
            await client.post(hook, content=body, headers=headers)
            direct_arrived = await asyncio.to_thread(arrivals.wait_for, direct_id)
            if n >= 5:  # the first few warm the connections up
                latencies.append((arrived - start) * 1000)
                direct.append((direct_arrived - direct_start) * 1000)
    worker.stop()
    await delivering
    await database.dispose()
    server.shutdown()
    server.server_close()
    return latencies, direct


def collect(postgres_url: str) -> list[dict[str, Any]]:
    """The rows; `postgres_url` names a database this may migrate and write to."""
    rows = []
    for name, (latencies, direct) in on_both_databases(postgres_url, measure):
        rows += percentile_rows(
            f"alert latency {{stat}}, crossing write to webhook vs direct POST ({name})",
            latencies,
            direct,
            {
                "database": name,
                "alerts": ALERTS,
                "worker": "DeliveryWorker in the writer's process, woken on the commit of the "
                "write (in-process; LISTEN/NOTIFY across processes)",
                "baseline": "a signed POST of an event body straight to the receiver",
            },
        )
    return rows


if __name__ == "__main__":
    run_alone(collect, __doc__)
