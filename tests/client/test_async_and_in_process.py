"""AsyncUsageTracker, and the in-process backend writing through a real Kernel."""

from __future__ import annotations

import asyncio
import time

import pytest

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.embedded import in_process_tracker
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from billing_kernel_sdk import QuotaExceeded, TransportError
from tests.conftest import new_id

pytestmark = pytest.mark.anyio
FAST = {"max_delay": 0.01, "backoff_base": 0.001, "backoff_cap": 0.01}


@pytest.fixture
def live_service(database: Database) -> Kernel:
    """A service on the real clock: the tracker stamps events with the real time."""
    return Kernel(database, Settings(database_url=str(database.url)))


async def test_in_process_backend_counts_through_the_billing_service(
    live_service: Kernel,
) -> None:
    kernel = live_service
    org_id = new_id()
    async with in_process_tracker(kernel, **FAST) as tracker:
        for n in range(300):
            tracker.track(org_id, "tokens", 7, idempotency_key=f"k{n % 250}")
        async with tracker.run(org_id, run_id="run-1") as first:
            pass
        async with tracker.run(org_id, run_id="run-1") as again:  # a retried run counts once
            pass
        tracker.track(org_id, "gpu_hours", 1)  # the kernel refuses an unknown metric
        tracker.track_event(org_id, "tokens", {"value": 5, "model": "gpt-5"}, idempotency_key="e")
        tracker.track(org_id, "tokens", 4, idempotency_key="p", properties={"model": "claude"})
        assert await tracker.flush(10)
        stats = tracker.stats()
    usage = await kernel.summary.period_usage(org_id)
    assert usage.used["tokens"] == 250 * 7 + 5 + 4
    assert usage.used["playbook_runs"] == 1
    # A repeated key is the same event, with its first use's time: a duplicate, counted once.
    assert (stats.accepted, stats.duplicates, stats.conflicts, stats.refused) == (252, 50, 0, 1)
    stored = {e.idempotency_key: e for e in await kernel.usage_reader.events(org_id, limit=1000)}
    assert (stored["e"].event, stored["e"].properties) == ("tokens", '{"model":"gpt-5","value":5}')
    assert (stored["p"].event, stored["p"].properties) == (None, '{"model":"claude"}')
    # The run was admitted by a consume, which its retry replays.
    assert first == again
    assert (first.allowed, first.consumed, first.reason) == (True, True, "within_limit")


async def test_in_process_backend_keeps_events_while_the_database_is_down(
    database_url: str,
) -> None:
    broken = Database("postgresql://postgres@127.0.0.1:9/billing")
    tracker = in_process_tracker(Kernel(broken, Settings(database_url=database_url)), **FAST)
    org_id = new_id()
    for _ in range(10):
        tracker.track(org_id, "tokens", 3)
    deadline = time.monotonic() + 30
    while tracker.stats().retried == 0:  # the first delivery tried, and failing
        assert time.monotonic() < deadline, "the tracker never tried to deliver"
        await asyncio.sleep(0.01)
    assert tracker.stats().pending == 10
    assert await tracker.aclose(timeout=0.05) is False
    await broken.dispose()


async def test_in_process_quota_calls_reserve_commit_release_and_refuse_by_the_kernels_rules(
    live_service: Kernel,
) -> None:
    """The in-process transport answers the quota calls as HTTP does: the same bodies, the
    same answers, and a call the kernel refuses as wrong raises with its status and code."""
    kernel = live_service
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="starter")
    hard = LimitOverride(1_000, sets_included=True, mode=Enforcement.HARD)
    await kernel.quota.set_override(org_id, "tokens", hard)
    async with in_process_tracker(kernel, **FAST) as tracker:
        async with tracker.reserve(org_id, "tokens", 600, idempotency_key="llm-1") as held:
            assert (await tracker.check(org_id, "tokens")).held == 600
            await held.commit(650)
        released = await tracker.reserve(org_id, "tokens", 300)
        await released.release()
        with pytest.raises(QuotaExceeded) as refused:
            await tracker.reserve(org_id, "tokens", 351)
        with pytest.raises(TransportError) as wrong:
            await tracker.check(org_id, "gpu_hours")
        after = await tracker.check(org_id, "tokens")
    assert (held.status, released.status) == ("committed", "released")
    assert refused.value.decision.remaining == 350
    assert (wrong.value.status, wrong.value.code) == (404, "unknown_metric")
    assert (after.used, after.held) == (650, 0)


async def test_in_process_entitlements_answer_as_http_does(live_service: Kernel) -> None:
    kernel = live_service
    org_id = new_id()
    await kernel.orgs.create(org_id, plan_slug="growth")
    await kernel.features.set_own_value(org_id, "sso", True)
    async with in_process_tracker(kernel, **FAST) as tracker:
        found = await tracker.entitlements(org_id)
        assert await tracker.has_feature(org_id, "sso")  # its own: growth grants it false
    assert (found.plan_slug, found.features["support"], found.limits["seats"]) == (
        "growth",
        "priority",
        10,
    )
