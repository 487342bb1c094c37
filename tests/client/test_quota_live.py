"""The SDK's quota calls against a real kernel server on PostgreSQL: `guard()`, `run()` and
`reserve()` at a hard limit, and `on_unavailable` while the kernel is down, with usage
allowed meanwhile counted exactly once when it is back."""

from __future__ import annotations

import asyncio

import pytest

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import Enforcement
from billing_kernel.quota.rules import LimitOverride
from billing_kernel_sdk import QuotaExceeded, TransportError, UsageTracker
from tests.client.faulty_proxy import FaultyProxy
from tests.client.test_tracker_live import FAST_RETRIES, counted
from tests.conftest import new_id
from tests.live import KernelServer

pytestmark = pytest.mark.long

QUICK = {**FAST_RETRIES, "decision_timeout": 1.0}


def hard_org(postgres_url: str, limits: dict[str, int]) -> str:
    """A new Starter org whose metrics in `limits` are hard at those quantities."""

    async def make() -> str:
        database = Database(postgres_url)
        kernel = Kernel(database, Settings(database_url=postgres_url))
        org_id = new_id()
        try:
            await kernel.orgs.create(org_id, plan_slug="starter")
            for metric, limit in limits.items():
                override = LimitOverride(limit, sets_included=True, mode=Enforcement.HARD)
                await kernel.quota.set_override(org_id, metric, override)
        finally:
            await database.dispose()
        return org_id

    return asyncio.run(make())


def test_guard_run_and_reserve_stop_at_a_hard_limit_with_the_kernels_message(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    server.start()
    org = hard_org(postgres_url, {"playbook_runs": 2, "tokens": 1_000})
    with UsageTracker(server.url, api_key, **QUICK) as tracker:
        for n in range(2):
            with tracker.run(org, run_id=f"run-{n}") as admitted:
                assert (admitted.allowed, admitted.consumed) == (True, True)
        with tracker.run(org, run_id="run-0"):  # a retried run: admitted again, not counted
            pass
        with pytest.raises(QuotaExceeded) as refused, tracker.guard(org, "playbook_runs"):
            pytest.fail("the guarded work must not run over the hard limit")
        with tracker.reserve(org, "tokens", 600, idempotency_key="llm-1") as reservation:
            assert tracker.check(org, "tokens").held == 600
            reservation.commit(750)  # more than estimated: counted in full
        retried = tracker.reserve(org, "tokens", 600, idempotency_key="llm-1")
        assert (retried.id, retried.status, retried.committed_quantity) == (
            reservation.id,
            "committed",
            750,
        )
        retried.commit(750)  # the same commit again: nothing more is recorded
        with pytest.raises(QuotaExceeded) as too_big, tracker.reserve(org, "tokens", 251):
            pytest.fail("a refused reservation runs nothing")
        after = tracker.check(org, "tokens")
        with pytest.raises(TransportError) as wrong:  # the caller's to fix: raised, not decided
            tracker.consume(org, "gpu_hours")
    assert (wrong.value.status, wrong.value.code, wrong.value.retryable) == (
        404,
        "unknown_metric",
        False,
    )
    decision = refused.value.decision
    assert (decision.reason, decision.used, decision.limit, decision.remaining) == (
        "limit_reached",
        2,
        2,
        0,
    )
    assert str(refused.value) == decision.message
    assert f"{org} has used all 2 runs included in Starter" in decision.message
    assert decision.upgrade is not None
    assert decision.upgrade.plan_slug == "growth"
    assert too_big.value.decision.remaining == 250
    assert (after.used, after.held) == (750, 0)
    assert counted(postgres_url, [org], "playbook_runs") == {org: 2}


def test_on_unavailable_both_ways_and_what_it_allowed_is_counted_once_the_kernel_is_back(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    org = hard_org(postgres_url, {"tokens": 1_000})
    tracker = UsageTracker(server.url, api_key, **QUICK)  # the kernel is not up yet
    with tracker.guard(org, "tokens", 40, on_unavailable="allow") as allowed:
        assert (allowed.allowed, allowed.reason, allowed.consumed) == (
            True,
            "kernel_unavailable",
            True,
        )
    with (
        pytest.raises(QuotaExceeded) as denied,
        tracker.guard(org, "tokens", 5, on_unavailable="deny"),
    ):
        pytest.fail("denied while the kernel is down")
    assert denied.value.decision.reason == "kernel_unavailable"
    server.start()
    assert tracker.flush(60)
    stats = tracker.stats()
    tracker.close()
    assert counted(postgres_url, [org]) == {org: 40}
    assert (stats.unavailable, stats.accepted) == (2, 1)


def test_a_consume_whose_every_answer_was_lost_is_counted_once(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    """The kernel recorded the consume; every answer to it (and to its retries) was lost, so
    the tracker allowed it by `on_unavailable` and queued its usage under the consume's key.
    That event repeats the kernel's: a duplicate."""
    server.start()
    org = hard_org(postgres_url, {"tokens": 1_000})
    proxy = FaultyProxy(server.url, drop_after_commit=1.0)
    try:
        with UsageTracker(proxy.url, api_key, **QUICK) as tracker:
            decision = tracker.consume(org, "tokens", 70, on_unavailable="allow")
            assert decision.unavailable
            assert decision.consumed
            proxy.rates = (0.0, 0.0, 0.0)  # the network heals
            assert tracker.flush(60)
            stats = tracker.stats()
    finally:
        proxy.close()
    assert proxy.seen["dropped"] >= 1
    assert counted(postgres_url, [org]) == {org: 70}
    assert (stats.accepted, stats.duplicates, stats.conflicts) == (0, 1, 0)


def test_an_orgs_entitlements_are_read_once_and_kept(
    server: KernelServer, api_key: str, postgres_url: str
) -> None:
    """`has_feature()` and `feature_value()` over HTTP: Enterprise's features and the org's
    own value, one read for all of them, and the limits with them."""

    async def featured() -> str:
        database = Database(postgres_url)
        kernel = Kernel(database, Settings(database_url=postgres_url))
        org_id = new_id()
        try:
            await kernel.orgs.create(org_id, plan_slug="enterprise")
            await kernel.features.set_own_value(org_id, "max_projects", 5_000)
        finally:
            await database.dispose()
        return org_id

    server.start()
    org = asyncio.run(featured())
    with UsageTracker(server.url, api_key, **QUICK) as tracker:
        assert tracker.has_feature(org, "sso")
        assert tracker.feature_value(org, "support") == "dedicated"
        assert tracker.feature_value(org, "max_projects") == 5_000  # its own
        assert not tracker.has_feature(org, "audit_log")
        found = tracker.entitlements(org)
        assert (found.plan_slug, found.limits["tokens"], found.cache_seconds) == (
            "enterprise",
            20_000_000,
            60,
        )
        server.stop()  # kept: answered without the kernel
        assert tracker.has_feature(org, "sso")
