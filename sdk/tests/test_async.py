"""AsyncUsageTracker: everything sent once, from any thread, across a restart with a spool."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from billing_kernel_sdk import AsyncUsageTracker, TransportError
from tests.fakes import FakeAsyncTransport, FakeKernel

pytestmark = pytest.mark.anyio
FAST = {"max_delay": 0.01, "backoff_base": 0.001, "backoff_cap": 0.01}


async def test_async_tracker_sends_everything_once_even_from_other_threads() -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("down", retryable=True)] * 2
    kernel.lose_answers = 1
    async with AsyncUsageTracker(
        transport=FakeAsyncTransport(kernel), max_batch=50, **FAST
    ) as tracker:
        for n in range(500):
            tracker.track("acme", "tokens", n)
        worker = threading.Thread(
            target=lambda: [tracker.track("beta", "tokens", 1) for _ in range(200)]
        )
        worker.start()
        worker.join()
        assert await tracker.flush(10)
        stats = tracker.stats()
    assert kernel.totals() == {"acme": sum(range(500)), "beta": 200}
    assert stats.queued == 700
    assert stats.retried == 3


async def test_async_tracker_with_a_spool_resumes_after_a_restart(tmp_path: Path) -> None:
    down = FakeKernel()
    down.failures = [TransportError("down", retryable=True)] * 10**6
    first = AsyncUsageTracker(
        transport=FakeAsyncTransport(down), spool_dir=tmp_path, **{**FAST, "backoff_cap": 60}
    )
    for n in range(120):
        first.track("acme", "tokens", n)
    assert await first.aclose(timeout=0.05) is False
    kernel = FakeKernel()
    async with AsyncUsageTracker(
        transport=FakeAsyncTransport(kernel), spool_dir=tmp_path, **FAST
    ) as second:
        assert await second.flush(10)
    assert kernel.totals() == {"acme": sum(range(120))}
