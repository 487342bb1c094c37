"""A batch the kernel fails on is split until the one bad event is found and set aside; a
momentary failure keeps the whole batch; a refused key is said at once."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from billing_kernel_sdk import TransportError
from tests.fakes import FakeKernel
from tests.test_tracker import tracker


def test_an_event_at_the_head_is_isolated_and_kept_in_memory_without_a_spool() -> None:
    kernel = FakeKernel()
    kernel.fails_on = {"bad"}
    with tracker(kernel, max_batch=100, max_delay=30) as t:
        t.track("acme", "tokens", 7, idempotency_key="bad")
        for n in range(99):
            t.track("acme", "tokens", 1, idempotency_key=f"k{n}")
        assert t.flush(10)
        stats = t.stats()
        dead = t.dead_letters()
        assert kernel.totals() == {"acme": 99}
        kernel.fails_on = set()  # mended: the recipe in docs/sdk.md sends it again
        for event in t.dead_letters():
            t.track(
                event["org_id"],  # type: ignore[arg-type]
                event["metric"],  # type: ignore[arg-type]
                event["quantity"],  # type: ignore[arg-type]
                idempotency_key=event["idempotency_key"],  # type: ignore[arg-type]
                occurred_at=datetime.fromisoformat(  # type: ignore[arg-type]
                    event.get("occurred_at") or event["observed_at"]
                ),
            )
        assert t.flush(10)
    assert (stats.accepted, stats.dead_lettered, stats.pending) == (99, 1, 0)
    assert [d["idempotency_key"] for d in dead] == ["bad"]
    assert kernel.totals() == {"acme": 106}


def test_a_kernel_failing_on_everything_sets_nothing_aside_and_loses_nothing() -> None:
    kernel = FakeKernel()
    kernel.fails_on = {f"k{n}" for n in range(20)}  # every event: no part is ever answered
    with tracker(kernel, max_batch=100, max_delay=30) as t:
        for n in range(20):
            t.track("acme", "tokens", 1, idempotency_key=f"k{n}")
        assert not t.flush(0.5)
        while_failing = t.stats()
        assert kernel.requests > 20  # it did narrow the batch down, more than once
        kernel.fails_on = set()  # the kernel is mended
        assert t.flush(10)
        stats = t.stats()
    assert (while_failing.dead_lettered, while_failing.pending) == (0, 20)
    assert "500" in str(while_failing.last_error)
    assert (stats.accepted, stats.dead_lettered, stats.last_error) == (20, 0, None)
    assert kernel.totals() == {"acme": 20}


@pytest.mark.parametrize("status", [503, 502, 504, 429, None])
def test_a_momentarily_unavailable_kernel_gets_the_whole_batch_again(status: int | None) -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("unavailable", retryable=True, status=status)] * 8
    with tracker(kernel, max_batch=100, max_delay=30) as t:
        for n in range(40):
            t.track("acme", "tokens", 1, idempotency_key=f"k{n}")
        assert t.flush(10)
        stats = t.stats()
    assert kernel.batches == [40]  # never split: nothing is wrong with the events
    assert (stats.accepted, stats.retried, stats.dead_lettered) == (40, 8, 0)


def test_a_batch_refused_whole_is_split_and_only_the_bad_event_refused() -> None:
    kernel = FakeKernel()
    kernel.malformed = {"k7"}
    with tracker(kernel, max_batch=100, max_delay=30) as t:
        for n in range(16):
            t.track("acme", "tokens", 1, idempotency_key=f"k{n}")
        assert t.flush(10)
        stats = t.stats()
    assert kernel.totals() == {"acme": 15}
    assert (stats.accepted, stats.refused, stats.dead_lettered) == (15, 1, 0)


def test_the_tracker_refuses_what_the_kernel_would_refuse_before_sending() -> None:
    kernel = FakeKernel()
    edge = [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone(-timedelta(hours=1))),
    ]
    with tracker(kernel) as t:
        for at in edge:
            t.track("acme", "tokens", 1, occurred_at=at)
        t.track("a\ud800b", "tokens", 1)
        t.track("acme", "tokens", 1, idempotency_key="k\udc00")
        t.track("acme", "tok\ud800ens", 1)
        t.track("acme", "tokens", 1, occurred_at="2026-11-01T00:00:00Z")  # type: ignore[arg-type]
        t.track("acme", "tokens", 5, occurred_at=datetime.now(UTC))
        assert t.flush(10)
        stats = t.stats()
    assert (stats.refused, stats.accepted) == (6, 1)
    assert kernel.totals() == {"acme": 5}


# --- a refused API key --------------------------------------------------------------------


def test_a_refused_key_is_reported_at_once_logged_rarely_and_the_events_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("kernel answered 401: bad key", retryable=True, status=401)]
    kernel.failures *= 10**6
    with caplog.at_level(logging.WARNING, logger="billing_kernel_sdk"):
        t = tracker(kernel, backoff_cap=0.05)
        for n in range(10):
            t.track("acme", "tokens", 1, idempotency_key=f"k{n}")
        started = time.monotonic()
        assert not t.flush(30)
        assert time.monotonic() - started < 1.0  # not the whole timeout
        time.sleep(0.3)  # several more refusals
        stats = t.stats()
        kernel.failures = []  # the key is fixed (e.g. the kernel restored)
        assert t.flush(10)
        t.close(5)
    assert stats.unauthorized > 2
    assert stats.pending == 10
    assert "401" in str(stats.last_error)
    said = [r for r in caplog.records if "refused the tracker's API key" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.ERROR
    assert kernel.totals() == {"acme": 10}


def test_a_refused_key_is_logged_again_once_the_interval_has_passed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("billing_kernel_sdk._sending.AUTH_LOG_SECONDS", 0.2)
    kernel = FakeKernel()
    kernel.failures = [TransportError("kernel answered 401", retryable=True, status=401)]
    kernel.failures *= 10**6
    with caplog.at_level(logging.ERROR, logger="billing_kernel_sdk"):
        t = tracker(kernel, backoff_cap=0.01)
        t.track("acme", "tokens", 1)
        time.sleep(1.0)
        refusals = t.stats().unauthorized
        t.close(0.1)
    said = [r for r in caplog.records if "refused the tracker's API key" in r.getMessage()]
    assert refusals > 20  # refused many times...
    assert 2 <= len(said) <= 6  # ...said once per interval of 0.2 s, not once per refusal
