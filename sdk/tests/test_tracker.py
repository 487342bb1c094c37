"""The tracker's behaviour with an injected transport (no sockets)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_kernel_sdk import SpoolBusyError, TransportError, UsageTracker
from tests.fakes import FakeKernel, FakeTransport

FAST = {"max_delay": 0.01, "backoff_base": 0.001, "backoff_cap": 0.01}


def tracker(kernel: FakeKernel, **options: object) -> UsageTracker:
    return UsageTracker(transport=FakeTransport(kernel), **{**FAST, **options})  # type: ignore[arg-type]


def test_every_tracked_event_is_sent_once_in_batches() -> None:
    kernel = FakeKernel()
    with tracker(kernel, max_batch=100) as t:
        for n in range(1_000):
            t.track(f"org-{n % 3}", "tokens", n)
        assert t.flush(10)
        stats = t.stats()
    assert kernel.totals() == {
        f"org-{r}": sum(n for n in range(1_000) if n % 3 == r) for r in range(3)
    }
    assert max(kernel.batches) <= 100
    assert (stats.queued, stats.accepted, stats.pending, stats.dropped) == (1_000, 1_000, 0, 0)


def test_a_keyed_event_without_a_time_is_sent_with_the_time_it_was_observed() -> None:
    """A key names one logical event, so a time the tracker only observed goes out as
    `observed_at` (which the kernel does not compare): tracking it again, from this or a
    new tracker, is the same payload. A time given, or an event without a key, is
    `occurred_at`."""
    kernel = FakeKernel()
    given_at = datetime(2026, 11, 1, tzinfo=UTC)
    for _ in range(2):
        with tracker(kernel) as t:
            t.track("acme", "tokens", 5, idempotency_key="job-1")
            t.track("acme", "tokens", 6, idempotency_key="job-2", occurred_at=given_at)
            t.track("acme", "tokens", 7)
            assert t.flush(10)
            stats = t.stats()
        assert (stats.conflicts, stats.refused) == (0, 0)
    sent = {e["quantity"]: e for e in kernel.seen.values()}
    times = {n: {k for k in ("occurred_at", "observed_at") if k in sent[n]} for n in sent}
    assert times == {5: {"observed_at"}, 6: {"occurred_at"}, 7: {"occurred_at"}}
    assert sent[6]["occurred_at"] == given_at.isoformat()
    assert kernel.totals() == {"acme": 5 + 6 + 7 + 7}  # the unkeyed event twice: two events


def test_named_events_and_properties_are_sent_as_the_kernel_takes_them() -> None:
    kernel = FakeKernel()
    with tracker(kernel) as t:
        t.track_event("acme", "tokens", {"value": 7, "model": "gpt-5"}, idempotency_key="e1")
        t.track_event("acme", "tokens", {"value": 7, "model": "gpt-5"}, idempotency_key="e1")
        t.track("acme", "tokens", 5, idempotency_key="m1", properties={"model": "claude"})
        t.track_event("acme", "x y" * 100, {})  # no name the kernel takes: refused here
        t.track_event("acme", "tokens", {"value": float("nan")})  # not JSON
        t.track_event("acme", "tokens", ["value", 3])  # type: ignore[arg-type]
        assert t.flush(10)
        stats = t.stats()
    assert kernel.totals() == {"acme": 12}
    assert kernel.seen["acme", "e1"]["properties"] == {"model": "gpt-5", "value": 7}
    assert "metric" not in kernel.seen["acme", "e1"]
    assert kernel.seen["acme", "m1"]["properties"] == {"model": "claude"}
    assert (stats.queued, stats.accepted, stats.duplicates, stats.refused) == (3, 2, 1, 3)


def test_retryable_failures_are_retried_and_lost_answers_count_once() -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("down", retryable=True)] * 3
    kernel.lose_answers = 2
    with tracker(kernel) as t:
        for n in range(50):
            t.track("acme", "tokens", 10, idempotency_key=f"k{n}")
        assert t.flush(10)
        stats = t.stats()
    assert kernel.totals() == {"acme": 500}
    assert stats.retried == 5
    # The first delivery was counted but its answer lost: the tracker hears "duplicate".
    assert (stats.accepted, stats.duplicates) == (0, 50)


def test_a_batch_the_kernel_will_never_take_is_counted_as_refused() -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("422 malformed", retryable=False)]
    with tracker(kernel) as t:
        t.track("acme", "tokens", 1)
        assert t.flush(10)
        t.track("acme", "refuse-me", 1)
        t.track("acme", "tokens", 2)
        assert t.flush(10)
        stats = t.stats()
    assert (stats.refused, stats.accepted) == (2, 1)


def test_invalid_arguments_are_counted_and_logged_once_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = FakeKernel()
    with caplog.at_level(logging.WARNING, logger="billing_kernel_sdk"), tracker(kernel) as t:
        for n in range(5):
            t.track("acme", "tokens", -1 - n)  # each value differs; the kind does not
            t.track("", "tokens", 1)
            t.track("acme", "tokens", 1.5)  # type: ignore[arg-type]
            t.track("acme", "tokens", 1, occurred_at=datetime(2026, 1, 1))  # noqa: DTZ001
        t.flush(10)
        stats = t.stats()
    assert (stats.refused, stats.queued) == (20, 0)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3  # one per argument that was wrong: quantity, org_id, occurred_at
    assert any("quantity must not be negative" in m for m in logged)  # the kernel's own words


def test_a_full_memory_buffer_drops_the_newest_and_counts_them() -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("down", retryable=True)] * 10**6
    t = tracker(kernel, max_queue=10, backoff_cap=60)
    for n in range(15):
        t.track("acme", "tokens", n)
    stats = t.stats()
    assert (stats.queued, stats.dropped, stats.pending) == (10, 5, 10)
    t.close(timeout=0.1)
    assert t.stats().dropped == 15  # closing without a spool loses what was unsent


def test_the_spool_keeps_events_across_trackers_until_the_kernel_counted_them(
    tmp_path: Path,
) -> None:
    down = FakeKernel()
    down.failures = [TransportError("down", retryable=True)] * 10**6
    first = tracker(down, backoff_cap=60, spool_dir=tmp_path)
    for n in range(300):
        first.track("acme", "tokens", n, occurred_at=datetime(2026, 11, 1, tzinfo=UTC))
    assert first.stats().spooled == 300
    assert first.close(timeout=0.1) is False  # could not deliver; kept on disk

    kernel = FakeKernel()
    # A long delay and a large batch keep the sender idle until flush(): pending is stable.
    with tracker(kernel, spool_dir=tmp_path, max_batch=1000, max_delay=30) as second:
        assert second.stats().pending == 300
        assert second.flush(10)
    assert kernel.totals() == {"acme": sum(range(300))}
    assert {e["occurred_at"] for e in kernel.seen.values()} == {"2026-11-01T00:00:00+00:00"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]


def test_one_tracker_per_spool(tmp_path: Path) -> None:
    with tracker(FakeKernel(), spool_dir=tmp_path), pytest.raises(SpoolBusyError):
        tracker(FakeKernel(), spool_dir=tmp_path)


def test_the_spool_disk_budget_drops_the_newest(tmp_path: Path) -> None:
    down = FakeKernel()
    down.failures = [TransportError("down", retryable=True)] * 10**6
    t = tracker(down, spool_dir=tmp_path, max_spool_bytes=2_000, backoff_cap=60)
    for n in range(100):
        t.track("acme", "tokens", n)
    stats = t.stats()
    assert stats.queued + stats.dropped == 100
    assert 10 < stats.queued < 100
    t.close(timeout=0.1)


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=300),
    st.binary(max_size=20),
    st.datetimes(),
    st.datetimes(timezones=st.just(UTC)),
    st.lists(st.integers(), max_size=3),
    st.decimals(),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    org_id=anything,
    metric=anything,
    quantity=anything,
    key=anything,
    at=anything,
    failure=st.sampled_from([None, "retryable", "final", "crash"]),
)
def test_track_never_raises_whatever_the_inputs_and_the_transport(
    org_id: object,
    metric: object,
    quantity: object,
    key: object,
    at: object,
    failure: str | None,
) -> None:
    kernel = FakeKernel()
    if failure == "retryable":
        kernel.failures = [TransportError("x", retryable=True)]
    elif failure == "final":
        kernel.failures = [TransportError("x", retryable=False)]
    elif failure == "crash":
        kernel.failures = [RuntimeError("transport bug")]  # type: ignore[list-item]
    chaotic = _shared.get("tracker") or _shared.setdefault("tracker", tracker(kernel))
    chaotic._transport = FakeTransport(kernel)  # type: ignore[attr-defined]
    # A tracker whose sender stays idle, so that every count below comes from these calls.
    idle = _shared.get("idle") or _shared.setdefault(
        "idle", tracker(FakeKernel(), max_delay=3600, max_batch=10**9)
    )
    before = idle.stats()
    for t in (chaotic, idle):
        t.track(org_id, metric, quantity, idempotency_key=key, occurred_at=at)  # type: ignore[arg-type]
        t.track_llm_usage(org_id, quantity)  # type: ignore[arg-type]
    after = idle.stats()
    # Each call is accounted for exactly once: taken, refused, skipped or dropped.
    accounted = ("queued", "refused", "skipped", "dropped")
    assert sum(getattr(after, n) - getattr(before, n) for n in accounted) == 2
    assert after.pending - before.pending == after.queued - before.queued


_shared: dict[str, UsageTracker] = {}


def teardown_module() -> None:
    for shared in _shared.values():
        shared.close(timeout=1)
    _shared.clear()
