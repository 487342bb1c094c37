"""Quota calls through the trackers: check, consume, guard, reserve and run, and what they do
when the kernel cannot be reached (on a kernel that behaves like the real one; the real one
is tested in the kernel's tests/client)."""

from __future__ import annotations

import itertools
import logging

import pytest

from billing_kernel_sdk import (
    AsyncUsageTracker,
    QuotaExceeded,
    ReservationError,
    TransportError,
    UsageTracker,
)
from billing_kernel_sdk._quota import Gate
from tests.fakes import FakeAsyncTransport, FakeKernel, FakeTransport

FAST = {"max_delay": 0.01, "backoff_base": 0.001, "backoff_cap": 0.01, "decision_timeout": 0.5}
DOWN = TransportError("could not reach the kernel", retryable=True)


def tracker(kernel: FakeKernel, **options: object) -> UsageTracker:
    return UsageTracker(transport=FakeTransport(kernel), **{**FAST, **options})  # type: ignore[arg-type]


@pytest.fixture
def kernel() -> FakeKernel:
    fake = FakeKernel()
    fake.limits = {"playbook_runs": 2, "tokens": 1_000}
    return fake


def test_guard_consumes_and_raises_quota_exceeded_with_the_message_once_refused(
    kernel: FakeKernel,
) -> None:
    ran = []
    with tracker(kernel) as t:
        for n in range(3):
            try:
                with t.guard("acme", "playbook_runs") as decision:
                    ran.append(n)
            except QuotaExceeded as refused:
                error = refused
        assert (decision.allowed, decision.consumed, decision.remaining) == (True, True, 1)
    assert ran == [0, 1]
    assert error.decision.reason == "limit_reached"
    assert str(error) == error.decision.message == "acme has used 2 of 2 playbook_runs."
    assert not error.decision.consumed
    assert kernel.totals("playbook_runs") == {"acme": 2}


def test_check_answers_without_recording_and_a_refusal_is_a_decision(kernel: FakeKernel) -> None:
    with tracker(kernel) as t:
        fits = t.check("acme", "tokens", 1_000)
        too_much = t.check("acme", "tokens", 1_001)
    assert (fits.allowed, fits.consumed, fits.limit, fits.enforcement) == (
        True,
        False,
        1_000,
        "hard",
    )
    assert (too_much.allowed, too_much.reason) == (False, "limit_reached")
    assert fits.resets_at is not None
    assert fits.resets_at.isoformat() == "2026-12-01T00:00:00+00:00"
    assert kernel.seen == {}


def test_a_consume_whose_answer_was_lost_is_retried_under_its_key_and_counted_once(
    kernel: FakeKernel,
) -> None:
    kernel.lose_request_answers = 2
    with tracker(kernel) as t:
        decision = t.consume("acme", "tokens", 300)
    assert (decision.allowed, decision.consumed, decision.used) == (True, True, 0)
    assert kernel.totals() == {"acme": 300}
    assert len(kernel.calls) == 3
    assert len({call.body["idempotency_key"] for call in kernel.calls}) == 1


def test_the_same_key_consumed_again_gets_the_first_decision(kernel: FakeKernel) -> None:
    with tracker(kernel) as t:
        first = t.consume("acme", "tokens", 600, idempotency_key="job-1")
        again = t.consume("acme", "tokens", 600, idempotency_key="job-1")
        other = t.consume("acme", "tokens", 600, idempotency_key="job-2")
    assert first == again
    assert first.allowed
    assert not other.allowed
    assert kernel.totals() == {"acme": 600}


@pytest.mark.parametrize("choice", ["allow", "deny"])
def test_on_unavailable_decides_when_the_kernel_cannot_be_reached(
    kernel: FakeKernel, choice: str, caplog: pytest.LogCaptureFixture
) -> None:
    kernel.failures = [DOWN] * 1_000
    with caplog.at_level(logging.WARNING, logger="billing_kernel_sdk"), tracker(kernel) as t:
        if choice == "allow":
            with t.guard("acme", "tokens", 40, on_unavailable="allow") as decision:
                pass
            assert (decision.allowed, decision.consumed, decision.unavailable) == (True, True, True)
            assert decision.used is None
        else:
            with (
                pytest.raises(QuotaExceeded) as refused,
                t.guard("acme", "tokens", 40, on_unavailable="deny"),
            ):
                pytest.fail("a denied guard runs nothing")
            assert refused.value.decision.reason == "kernel_unavailable"
            assert "try again" in str(refused.value)
        stats = t.stats()
        assert stats.unavailable == 1
        kernel.failures.clear()  # the kernel is back
        assert t.flush(5)
    assert kernel.totals() == ({"acme": 40} if choice == "allow" else {})
    assert f"on_unavailable: {choice}" in caplog.text


def test_allowed_while_unreachable_is_counted_once_also_when_the_consume_did_reach_the_kernel(
    kernel: FakeKernel,
) -> None:
    """Every answer lost: the kernel recorded the consume, the tracker could not know and
    allowed it, and queued its usage under the consume's key: a duplicate, counted once."""
    kernel.lose_request_answers = 10**6
    with tracker(kernel, decision_timeout=0.2) as t:
        decision = t.consume("acme", "tokens", 70, idempotency_key="call-1")
        assert decision.unavailable
        assert decision.consumed
        assert t.flush(5)
        stats = t.stats()
    assert kernel.totals() == {"acme": 70}
    assert (stats.accepted, stats.duplicates, stats.conflicts) == (0, 1, 0)


def test_by_default_a_metric_last_seen_hard_is_denied_and_a_soft_or_unknown_one_allowed(
    kernel: FakeKernel,
) -> None:
    with tracker(kernel) as t:
        assert t.check("acme", "tokens").enforcement == "hard"
        assert t.check("acme", "seats_soft").enforcement == "soft"
        kernel.failures = [DOWN] * 1_000
        assert not t.check("acme", "tokens").allowed
        assert t.check("acme", "seats_soft").allowed
        assert t.check("acme", "never_asked").allowed
        assert t.check("other-org", "tokens").allowed  # its own terms: not known yet
        assert t.check("acme", "tokens", on_unavailable="allow").allowed
    with tracker(kernel, on_unavailable="deny") as strict:
        assert not strict.check("acme", "never_asked").allowed


def test_what_the_caller_must_fix_is_raised_not_decided(kernel: FakeKernel) -> None:
    kernel.failures = [TransportError("kernel answered 403", retryable=False, status=403)]
    with tracker(kernel) as t:
        with pytest.raises(TransportError) as raised:
            t.consume("acme", "tokens")
        assert raised.value.status == 403
        with pytest.raises(ValueError, match="org_id"):
            t.check("", "tokens")
        with pytest.raises(ValueError, match="idempotency_key"):
            t.consume("acme", "tokens", idempotency_key=" padded ")
        assert t.stats().unavailable == 0
    with pytest.raises(ValueError, match="on_unavailable"):
        tracker(kernel, on_unavailable="maybe")


def test_a_reservation_holds_then_commits_what_was_used_or_releases_on_leaving(
    kernel: FakeKernel,
) -> None:
    with tracker(kernel) as t:
        with t.reserve("acme", "tokens", 600, ttl_seconds=60) as r:
            assert r.status == "held"
            assert r.id is not None
            assert t.check("acme", "tokens", 401).reason == "limit_reached"  # 600 held
            r.commit(750)  # more than estimated: counted in full
            r.commit(750)  # a repeat answers the same
            with pytest.raises(ReservationError):
                r.commit(751)
        with t.reserve("acme", "tokens", 200) as unused:
            pass
        with pytest.raises(QuotaExceeded) as refused, t.reserve("acme", "tokens", 251):
            pytest.fail("a refused reservation runs nothing")
    assert unused.status == "released"
    assert refused.value.decision.remaining == 250
    assert kernel.totals() == {"acme": 750}
    assert kernel.calls[0].body["ttl_seconds"] == 60


def test_a_commit_while_the_kernel_is_unreachable_is_queued_under_the_reservation_key(
    kernel: FakeKernel,
) -> None:
    with tracker(kernel) as t:
        with t.reserve("acme", "tokens", 100, idempotency_key="llm-call-7") as r:
            kernel.failures = [DOWN] * 1_000
            r.commit(90)
        assert r.status == "committed"
        kernel.failures.clear()
        assert t.flush(5)
        kernel.failures = [DOWN] * 1_000  # a reservation made while it is down is local
        with t.reserve(
            "acme", "tokens", 10, idempotency_key="llm-call-8", on_unavailable="allow"
        ) as local:
            local.commit(12)
        assert local.id is None
        assert local.decision is not None
        assert local.decision.unavailable
        kernel.failures.clear()
        assert t.flush(5)
    assert kernel.totals() == {"acme": 102}
    assert kernel.seen[("acme", "llm-call-7")]["quantity"] == 90


def test_runs_are_admitted_through_a_consume_keyed_by_the_run_id(kernel: FakeKernel) -> None:
    with tracker(kernel) as t:
        for _ in range(2):
            with t.run("acme", run_id="r1"):
                pass
        with t.run("acme", run_id="r2"):
            pass
        with pytest.raises(QuotaExceeded), t.run("acme", run_id="r3"):
            pytest.fail("the third run is over the hard limit of 2")
    assert kernel.totals("playbook_runs") == {"acme": 2}
    assert {call.body["idempotency_key"] for call in kernel.calls} == {"run:r1", "run:r2", "run:r3"}


def test_a_transport_without_quota_calls_says_so() -> None:
    class BatchesOnly:
        def send(self, events: object) -> list[object]:
            return []

        def close(self) -> None:
            pass

    t = UsageTracker(transport=BatchesOnly(), **FAST)  # type: ignore[arg-type]
    with t, pytest.raises(TypeError, match="makes no quota calls"):
        t.check("acme", "tokens")


def test_retries_fit_inside_the_decision_budget() -> None:
    ticks = itertools.count(step=0.0)
    now = [0.0]

    def clock() -> float:
        next(ticks)
        return now[0]

    attempts = []
    for wait, timeout in Gate(None, None, 1.0).schedule(clock):  # type: ignore[arg-type]
        attempts.append((wait, round(timeout, 3)))
        now[0] += wait + 0.01  # each attempt fails after 10 ms
    assert [wait for wait, _ in attempts] == [0.0, 0.05, 0.1, 0.2, 0.4]
    assert all(timeout > 0 for _, timeout in attempts)
    assert now[0] <= 1.0
    with pytest.raises(ValueError, match="decision_timeout"):
        Gate(None, None, 0)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_the_async_tracker_guards_reserves_and_runs(kernel: FakeKernel) -> None:
    async with AsyncUsageTracker(transport=FakeAsyncTransport(kernel), **FAST) as t:  # type: ignore[arg-type]
        async with t.guard("acme", "tokens", 100) as decision:
            assert decision.consumed
        async with t.reserve("acme", "tokens", 500) as r:
            await r.commit(450)
        held = await t.reserve("acme", "tokens", 100)
        await held.release()
        async with t.run("acme", run_id="r1"):
            pass

        @t.tracks_run()
        async def execute(org_id: str, run_id: str) -> str:
            return run_id

        assert await execute("acme", "r2") == "r2"
        with pytest.raises(QuotaExceeded):
            await execute("acme", "r3")
        with pytest.raises(QuotaExceeded):
            async with t.guard("acme", "tokens", 451):
                pytest.fail("over the limit")
        kernel.failures = [DOWN] * 1_000
        offline = await t.consume("acme", "tokens", 5, on_unavailable="allow")
        assert offline.unavailable
        assert offline.consumed
        kernel.failures.clear()
        assert await t.flush(5)
    assert kernel.totals() == {"acme": 555}
    assert kernel.totals("playbook_runs") == {"acme": 2}
    assert held.status == "released"


@pytest.mark.anyio
async def test_the_async_tracker_does_not_gate_a_sync_function(kernel: FakeKernel) -> None:
    async with AsyncUsageTracker(transport=FakeAsyncTransport(kernel), **FAST) as t:  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="async function"):

            @t.tracks_run()
            def execute(org_id: str, run_id: str) -> None:
                pass


def test_the_policy_memory_forgets_the_longest_unused_first(
    kernel: FakeKernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("billing_kernel_sdk._quota.REMEMBERED_POLICIES", 2)
    with tracker(kernel) as t:
        for org in ("a", "b", "a", "c"):  # "a" used again after "b": "b" is forgotten
            t.check(org, "tokens")
        kernel.failures = [DOWN] * 1_000
        offline = {org: t.check(org, "tokens").allowed for org in ("a", "b", "c")}
    assert offline == {"a": False, "b": True, "c": False}


def test_a_reservation_retried_under_its_key_comes_back_in_its_state_now(
    kernel: FakeKernel,
) -> None:
    with tracker(kernel) as t:
        with t.reserve("acme", "tokens", 100, idempotency_key="call-9") as first:
            first.commit(80)
        again = t.reserve("acme", "tokens", 100, idempotency_key="call-9")
        assert (again.id, again.status, again.committed_quantity) == (first.id, "committed", 80)
        again.commit(80)  # the same commit: answered as it was, counted once
        with pytest.raises(ReservationError):
            again.commit(81)
    assert kernel.totals() == {"acme": 80}
