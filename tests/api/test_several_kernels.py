"""Three `serve` processes behind Debian's nginx on one PostgreSQL database, with two
delivery workers beside them: a load run through nginx (events tracked by the SDK,
concurrent consumes against a hard limit) while one kernel is SIGKILLed and started again.
Nothing is lost or counted twice, the only errors are the requests the dead kernel held
(answered 502 by nginx, retried by the SDK under their keys), nginx sends to the kernel
again once it is back, and each alert goes out once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
from sqlalchemy import select

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.db.tables import billing_events, deliveries
from billing_kernel.kernel import Kernel
from billing_kernel.notifications.rules import DeliveryStatus
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from billing_kernel_sdk import Decision, UsageTracker
from tests.client.test_tracker_live import FAST_RETRIES, counted
from tests.conftest import new_id, own_database_url
from tests.live import KernelServer, kernel_command, start_worker, stop_process
from tests.nginx import Nginx, nginx
from tests.receivers import http_receiver

pytestmark = pytest.mark.long

LIMIT = 150
"""The hard limit of playbook runs the consumers race for."""
CONSUMERS = 6
CHUNK = 200
"""Events tracked between two flushes: the producer keeps pace with what is delivered."""


def until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.02)


async def arrange(url: str, receiver_url: str) -> tuple[list[str], str]:
    """Four orgs whose tokens cross their alerts' thresholds at 800 and 1,000, one whose
    playbook runs are hard-limited at LIMIT, and an endpoint for every org's events."""
    database = Database(url)
    kernel = Kernel(database, Settings(database_url=url))
    try:
        orgs = [new_id() for _ in range(4)]
        for org_id in orgs:
            await kernel.orgs.create(org_id, plan_slug="starter")
            await kernel.quota.set_override(
                org_id, "tokens", LimitOverride(1_000, sets_included=True, mode=Enforcement.SOFT)
            )
        limited = new_id()
        await kernel.orgs.create(limited, plan_slug="starter")
        await kernel.quota.set_override(
            limited,
            "playbook_runs",
            LimitOverride(LIMIT, sets_included=True, mode=Enforcement.HARD),
        )
        await kernel.notifications.add_endpoint(receiver_url)
        return orgs, limited
    finally:
        await database.dispose()


async def outbox(url: str) -> tuple[set[str], Counter[str]]:
    """The ids of every billing event, and how many webhook deliveries are in each state."""
    database = Database(url)
    try:
        async with database.read() as conn:
            events = set((await conn.execute(select(billing_events.c.event_id))).scalars())
            webhooks = select(deliveries.c.status).where(deliveries.c.channel == "webhook")
            statuses = Counter(str(status) for status in (await conn.execute(webhooks)).scalars())
            return events, statuses
    finally:
        await database.dispose()


def delivered_all(url: str) -> bool:
    events, statuses = asyncio.run(outbox(url))
    return bool(events) and statuses == {str(DeliveryStatus.DELIVERED): len(events)}


class Load:
    """Events tracked in chunks, and consumes from several threads, until stopped."""

    def __init__(self, tracker: UsageTracker, orgs: list[str], limited: str) -> None:
        self.tracker, self.orgs, self.limited = tracker, orgs, limited
        self.stop = threading.Event()
        self.tracked: Counter[str] = Counter()
        self.decisions: list[Decision] = []
        self.failures: list[BaseException] = []
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._guarded(self._produce))] + [
            threading.Thread(target=self._guarded(self._consume, n)) for n in range(CONSUMERS)
        ]

    def _guarded(self, work: Callable[..., None], *args: object) -> Callable[[], None]:
        def run() -> None:
            try:
                work(*args)
            except BaseException as exc:  # reported by the test
                self.failures.append(exc)
                self.stop.set()

        return run

    def _produce(self) -> None:
        n = 0
        while not self.stop.is_set():
            for _ in range(CHUNK):
                org_id, quantity = self.orgs[n % len(self.orgs)], 1 + n % 7
                self.tracker.track(org_id, "tokens", quantity)
                self.tracked[org_id] += quantity
                n += 1
            assert self.tracker.flush(120), "the tracker could not deliver a chunk"

    def _consume(self, thread: int) -> None:
        n = 0
        while not self.stop.is_set():
            decision = self.tracker.consume(
                self.limited, "playbook_runs", idempotency_key=f"t{thread}-{n}"
            )
            with self._lock:
                self.decisions.append(decision)
            n += 1

    def delivered(self) -> int:
        stats = self.tracker.stats()
        return stats.accepted + stats.duplicates

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(180)


def answered_by(balancer: Nginx, port: int, after: float) -> int:
    """How many requests the kernel on `port` answered after `after`."""
    mine = f"127.0.0.1:{port}"
    return sum(1 for r in balancer.logged() if r.at > after and r.upstreams[-1] == mine)


def test_a_kernel_killed_and_restarted_behind_nginx_loses_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        url = stack.enter_context(own_database_url("postgres", tmp_path))
        key = kernel_command(url, "api-keys", "create", "--scopes", "usage:write,quota:check")
        receiver = stack.enter_context(http_receiver())
        orgs, limited = asyncio.run(arrange(url, receiver.url))
        kernels = [KernelServer(url, log=tmp_path / f"kernel-{n}.log") for n in range(3)]
        for kernel in kernels:
            stack.callback(kernel.stop)
            kernel.start(wait=False)
        for kernel in kernels:
            kernel.wait_ready()
        workers = [start_worker(url) for _ in range(2)]
        for worker in workers:
            stack.callback(stop_process, worker)
        balancer = stack.enter_context(nginx([kernel.port for kernel in kernels]))
        tracker = UsageTracker(
            balancer.url,
            key,
            spool_dir=tmp_path / "spool",
            on_unavailable="deny",
            **FAST_RETRIES,
        )
        stack.callback(tracker.close)
        victim = kernels[1]

        with Load(tracker, orgs, limited) as load:
            until(lambda: load.delivered() >= 2_000 or load.stop.is_set(), "2,000 events landed")
            killed_at = time.time()
            victim.kill()  # SIGKILL: what it held in flight is cut
            seen = load.delivered()
            until(lambda: load.delivered() >= seen + 2_000 or load.stop.is_set(), "2,000 more")
            victim.start()
            back_at = time.time()
            until(
                lambda: answered_by(balancer, victim.port, back_at) >= 50 or load.stop.is_set(),
                "the restarted kernel answered through nginx",
            )
        assert load.failures == []
        assert tracker.flush(120)
        stats = tracker.stats()

        # Nothing lost, nothing doubled.
        assert counted(url, orgs) == {org_id: load.tracked[org_id] for org_id in orgs}
        assert stats.accepted + stats.duplicates == stats.queued
        assert stats.dropped == 0
        assert [d.reason for d in load.decisions if d.reason == "kernel_unavailable"] == []
        assert sum(d.allowed for d in load.decisions) == LIMIT < len(load.decisions)
        assert counted(url, [limited], "playbook_runs") == {limited: LIMIT}

        # The only errors: the requests the dead kernel held when it died.
        logged = balancer.logged()
        errors = [r for r in logged if r.status >= 500]
        assert {r.status for r in errors} <= {502}
        assert {r.upstreams[-1] for r in errors} <= {f"127.0.0.1:{victim.port}"}
        assert all(killed_at - 1 <= r.at <= back_at for r in errors)
        assert len(errors) <= CONSUMERS + 1  # at most one request of each client thread
        assert {r.status for r in logged if r.status < 500} <= {200, 201}
        answered = Counter(r.upstreams[-1] for r in logged)
        assert set(answered) == {f"127.0.0.1:{kernel.port}" for kernel in kernels}

        # Each alert out once, though two workers deliver.
        until(lambda: delivered_all(url), "every alert was delivered")
        for worker in workers:
            worker.terminate()
            assert worker.wait(30) == 0
        events, _ = asyncio.run(outbox(url))
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert sorted(ids) == sorted(events)  # each once
        assert len(ids) >= len(orgs) * 2 + 1  # 80 % and 100 % of each org's tokens, and more
