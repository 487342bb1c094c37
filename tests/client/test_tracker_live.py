"""Exactly-once delivery against a real kernel server on PostgreSQL, through outages,
restarts, a killed client process, and a network that fails on purpose."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel_sdk import UsageTracker
from tests.client.faulty_proxy import FaultyProxy
from tests.conftest import new_id
from tests.live import KernelServer

pytestmark = pytest.mark.long

FAST_RETRIES = {"max_delay": 0.05, "backoff_base": 0.05, "backoff_cap": 1.0, "max_batch": 200}


def counted(postgres_url: str, org_ids: list[str], metric: str = "tokens") -> dict[str, int]:
    """What the kernel's database holds for each org this month."""

    async def read() -> dict[str, int]:
        database = Database(postgres_url)
        kernel = Kernel(database, Settings(database_url=postgres_url))
        try:
            return {
                org_id: (await kernel.summary.period_usage(org_id)).used[metric]
                for org_id in org_ids
            }
        finally:
            await database.dispose()

    return asyncio.run(read())


def test_events_tracked_while_the_kernel_is_down_arrive_once_it_is_up(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    orgs = [new_id() for _ in range(3)]
    tracker = UsageTracker(server.url, api_key, **FAST_RETRIES)
    for n in range(3_000):
        tracker.track(orgs[n % 3], "tokens", n)
    time.sleep(10)  # the kernel comes up 10 s later
    server.start()
    assert tracker.flush(60)
    stats = tracker.stats()
    tracker.close()
    assert counted(postgres_url, orgs) == {
        org: sum(n for n in range(3_000) if n % 3 == i) for i, org in enumerate(orgs)
    }
    assert stats.retried > 0
    assert (stats.accepted, stats.dropped) == (3_000, 0)


def test_named_events_tracked_count_toward_the_metrics_that_count_them(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    """The default `tokens` metric counts events named `tokens` by their `value`; a repeat
    of a key counts once, and an event no metric counts is refused, not retried."""
    org = new_id()
    server.start()
    with UsageTracker(server.url, api_key, **FAST_RETRIES) as tracker:
        for n in range(300):
            properties = {"value": n, "model": "gpt-5" if n % 2 else "claude"}
            tracker.track_event(org, "tokens", properties, idempotency_key=f"e{n % 200}")
        tracker.track_event(org, "gpu.hour", {"value": 1})
        tracker.track(org, "playbook_runs", 2, properties={"model": "gpt-5"})
        assert tracker.flush(30)
        stats = tracker.stats()
    assert counted(postgres_url, [org]) == {org: sum(range(200))}
    assert counted(postgres_url, [org], "playbook_runs") == {org: 2}
    assert (stats.accepted, stats.conflicts, stats.refused) == (
        201,
        100,
        1,
    )  # 100 keys reused with another value, 1 name no metric counts


def test_a_kernel_killed_and_restarted_mid_stream_of_20000_events_counts_each_once(
    server: KernelServer, api_key: str, postgres_url: str, tmp_path: Path
) -> None:
    server.start()
    orgs = [new_id() for _ in range(4)]
    tracker = UsageTracker(server.url, api_key, spool_dir=tmp_path, **FAST_RETRIES)

    def stream() -> None:
        for n in range(20_000):
            tracker.track(orgs[n % 4], "tokens", 1 + n % 7)
            if n % 50 == 0:
                time.sleep(0.005)  # about 2.5 s of traffic

    producer = threading.Thread(target=stream)
    producer.start()
    time.sleep(1.0)
    server.kill()  # SIGKILL, batches in flight are cut
    time.sleep(1.0)
    server.start()
    producer.join()
    assert tracker.flush(120)
    stats = tracker.stats()
    tracker.close()
    expected = {
        org: sum(1 + n % 7 for n in range(20_000) if n % 4 == i) for i, org in enumerate(orgs)
    }
    assert counted(postgres_url, orgs) == expected
    assert stats.queued == 20_000
    assert stats.accepted + stats.duplicates == 20_000
    assert stats.dropped == 0


CLIENT = textwrap.dedent("""
    import sys, time
    from billing_kernel_sdk import UsageTracker
    url, key, spool, org = sys.argv[1:5]
    tracker = UsageTracker(url, key, spool_dir=spool, max_delay=0.05, max_batch=100)
    for n in range(5_000):
        tracker.track(org, "tokens", 3)
    print("tracked", flush=True)
    time.sleep(60)
""")


def test_a_client_killed_after_track_returned_loses_nothing(
    server: KernelServer, api_key: str, postgres_url: str, tmp_path: Path
) -> None:
    server.start()
    org = new_id()
    spool = tmp_path / "spool"
    child = subprocess.Popen(
        [sys.executable, "-c", CLIENT, server.url, api_key, str(spool), org],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "tracked"
    child.send_signal(signal.SIGKILL)  # no atexit, no flush: only the spool survives
    child.wait(10)
    with UsageTracker(server.url, api_key, spool_dir=spool, **FAST_RETRIES) as heir:
        resumed = heir.stats().pending
        assert heir.flush(60)
    assert counted(postgres_url, [org]) == {org: 15_000}
    assert 0 < resumed <= 5_000


def test_500s_429s_and_answers_lost_after_commit_still_count_exactly(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    server.start()
    proxy = FaultyProxy(server.url, error_500=0.15, error_429=0.1, drop_after_commit=0.2)
    orgs = [new_id() for _ in range(2)]
    try:
        tracker = UsageTracker(
            proxy.url, api_key, **{**FAST_RETRIES, "max_batch": 100, "backoff_cap": 0.3}
        )
        for n in range(4_000):
            tracker.track(orgs[n % 2], "tokens", n % 11)
        assert tracker.flush(120)
        stats = tracker.stats()
        tracker.close()
    finally:
        proxy.close()
    assert counted(postgres_url, orgs) == {
        org: sum(n % 11 for n in range(4_000) if n % 2 == i) for i, org in enumerate(orgs)
    }
    assert min(proxy.seen.values()) > 0  # every kind of fault happened
    assert stats.duplicates > 0  # resent after a lost answer, counted once
    assert stats.accepted + stats.duplicates == 4_000


EXITING = textwrap.dedent("""
    import asyncio, sys
    from billing_kernel_sdk import AsyncUsageTracker, UsageTracker
    url, key, org, kind = sys.argv[1:5]
    if kind == "sync":
        tracker = UsageTracker(url, key, max_delay=30, max_batch=10_000)
        for n in range(1_000):
            tracker.track(org, "tokens", 2)
    else:
        async def main():
            global tracker
            tracker = AsyncUsageTracker(url, key, max_delay=30, max_batch=10_000)
            for n in range(1_000):
                tracker.track(org, "tokens", 2)
        asyncio.run(main())
    # no flush, no close: the interpreter exits with everything still queued in memory
""")


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_clean_interpreter_exit_drains_the_tracker(
    server: KernelServer, api_key: str, postgres_url: str, kind: str
) -> None:
    server.start()
    org = new_id()
    subprocess.run(
        [sys.executable, "-c", EXITING, server.url, api_key, org, kind], check=True, timeout=60
    )
    assert counted(postgres_url, [org]) == {org: 2_000}


def test_one_llm_response_tracked_again_by_a_rerun_and_a_run_re_entered_count_once_quietly(
    server: KernelServer, api_key: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The product's job runs again (a retry, a rerun in a new process: a new tracker that
    remembers nothing) with the same response, and re-enters the same run, after the first
    event reached the kernel: the repeat is a duplicate, not a conflict, also for a response
    without a time of its own (Anthropic's)."""
    server.start()
    org = new_id()
    response = {"id": new_id("msg"), "usage": {"input_tokens": 700, "output_tokens": 42}}
    seen = []
    with caplog.at_level(logging.INFO, logger="billing_kernel_sdk"):
        for _ in range(2):
            with UsageTracker(server.url, api_key, **FAST_RETRIES) as tracker:
                tracker.track_llm_usage(org, response)
                with tracker.run(org, run_id="nightly-report"):
                    pass
                assert tracker.flush(30)
                seen.append(tracker.stats())
    first, rerun = seen
    # The run is admitted by a consume (replayed when re-entered), not sent as an event.
    assert (first.accepted, first.duplicates, first.conflicts, first.refused) == (1, 0, 0, 0)
    assert (rerun.accepted, rerun.duplicates, rerun.conflicts, rerun.refused) == (0, 1, 0, 0)
    assert counted(postgres_url, [org]) == {org: 742}
    assert counted(postgres_url, [org], "playbook_runs") == {org: 1}
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
