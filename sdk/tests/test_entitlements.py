"""An org's entitlements through the trackers: one read answers every feature and limit, kept
for the time the kernel says; the last answer while the kernel is out of reach; a refusal
raised."""

from __future__ import annotations

import time

import pytest

from billing_kernel_sdk import AsyncUsageTracker, Entitlements, TransportError, UsageTracker
from tests.fakes import FakeAsyncTransport, FakeKernel, FakeTransport

FAST = {"max_delay": 0.01, "backoff_base": 0.001, "backoff_cap": 0.01, "decision_timeout": 0.2}
DOWN = TransportError("could not reach the kernel", retryable=True)


@pytest.fixture
def kernel() -> FakeKernel:
    fake = FakeKernel()
    fake.limits = {"tokens": 1_000}
    fake.features = {"acme": {"sso": True, "max_projects": 5, "beta": False}}
    return fake


def tracker(kernel: FakeKernel) -> UsageTracker:
    return UsageTracker(transport=FakeTransport(kernel), **FAST)  # type: ignore[arg-type]


def test_one_read_answers_every_feature_and_limit_and_is_kept_its_time(
    kernel: FakeKernel,
) -> None:
    with tracker(kernel) as t:
        found = t.entitlements("acme")
        assert found == Entitlements(
            "acme",
            "starter",
            1,
            {"sso": True, "max_projects": 5, "beta": False},
            {"tokens": 1_000},
            60,
        )
        assert t.has_feature("acme", "sso")
        assert not t.has_feature("acme", "beta")  # granted false
        assert not t.has_feature("acme", "audit_log")  # not granted
        assert t.feature_value("acme", "max_projects") == 5
        assert t.feature_value("acme", "audit_log", "none") == "none"
        assert len(kernel.calls) == 1  # kept: one read for all of those
        [call] = kernel.calls
        assert (call.method, call.org_id, call.body) == ("GET", "acme", {})
        kernel.features["acme"]["sso"] = False
        assert t.has_feature("acme", "sso")  # still the kept answer
        assert not t.entitlements("acme", refresh=True).has_feature("sso")
        assert not t.has_feature("other", "sso")  # each org its own
        assert len(kernel.calls) == 3


def test_an_answer_kept_no_time_is_read_again_each_time(kernel: FakeKernel) -> None:
    kernel.cache_seconds = 0
    with tracker(kernel) as t:
        t.has_feature("acme", "sso")
        t.has_feature("acme", "sso")
    assert len(kernel.calls) == 2


def test_while_the_kernel_is_out_of_reach_the_last_answer_holds(kernel: FakeKernel) -> None:
    kernel.cache_seconds = 0
    with tracker(kernel) as t:
        kernel.failures = [DOWN] * 1_000
        with pytest.raises(TransportError):  # nothing read yet: nothing to answer with
            t.entitlements("acme")
        kernel.failures = []
        assert t.has_feature("acme", "sso")
        kernel.features["acme"]["sso"] = False
        kernel.failures = [DOWN] * 1_000
        assert t.has_feature("acme", "sso")  # the last answer, however old
        kernel.failures = [TransportError("kernel answered 403", retryable=False, status=403)]
        with pytest.raises(TransportError, match="403"):  # a refusal is the caller's to fix
            t.entitlements("acme")


def test_the_last_answer_used_while_the_kernel_is_down_is_kept_its_time_again(
    kernel: FakeKernel,
) -> None:
    with tracker(kernel) as t:
        read = t.entitlements("acme")
        t._entitlements.keep(read, time.monotonic() - 120)  # as if read two minutes ago
        kernel.failures = [DOWN] * 1_000
        asked = len(kernel.calls)
        assert t.has_feature("acme", "sso")  # asked, out of reach: the last answer
        tried = len(kernel.calls)
        assert tried > asked
        assert t.has_feature("acme", "sso")  # kept again: the kernel is not asked again
        assert len(kernel.calls) == tried
        kernel.failures = []
        kernel.features["acme"]["sso"] = False
        assert not t.entitlements("acme", refresh=True).has_feature("sso")  # back: read


def test_a_malformed_answer_is_not_taken(kernel: FakeKernel) -> None:
    class Garbled(FakeTransport):
        def request(self, call, timeout):  # type: ignore[no-untyped-def]
            return {"org_id": "acme"}

    with (
        UsageTracker(transport=Garbled(kernel), **FAST) as t,  # type: ignore[arg-type]
        pytest.raises(TransportError, match="unreadable entitlements"),
    ):
        t.entitlements("acme")


@pytest.mark.anyio
async def test_the_async_tracker_reads_and_keeps_them_alike(kernel: FakeKernel) -> None:
    async with AsyncUsageTracker(transport=FakeAsyncTransport(kernel), **FAST) as t:  # type: ignore[arg-type]
        assert await t.has_feature("acme", "sso")
        assert await t.feature_value("acme", "max_projects") == 5
        assert (await t.entitlements("acme")).limits == {"tokens": 1_000}
        kernel.failures = [DOWN] * 1_000
        assert (await t.entitlements("acme", refresh=True)).has_feature("sso")
    assert len(kernel.calls) >= 2
