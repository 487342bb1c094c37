"""What `track()` costs the product's hot path, next to the seed's approach: an awaited
database write per call (`Kernel.update_usage_counters`), measured in the same run.

Usage: python bench/track_overhead.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel_sdk import EventResult, UsageTracker
from common import cpu_seconds, migrated, percentile, row, run_alone

TRACK_CALLS = 100_000
DB_CALLS = 2_000


class AcceptingTransport:
    """Answers every batch at once, so the sender thread runs but the network is not measured."""

    def send(self, events: Sequence[dict[str, Any]]) -> list[EventResult]:
        return [EventResult("accepted")] * len(events)

    def close(self) -> None:
        pass


def time_track(spool_dir: Path | None) -> list[float]:
    tracker = UsageTracker(transport=AcceptingTransport(), spool_dir=spool_dir)
    track = tracker.track
    for n in range(2_000):  # warm up
        track("org-warm", "tokens", n)
    samples = []
    gc.disable()
    try:
        for n in range(TRACK_CALLS):
            start = time.perf_counter_ns()
            track("org-bench", "tokens", n)
            samples.append((time.perf_counter_ns() - start) / 1000)
    finally:
        gc.enable()
    tracker.close(30)
    return samples


async def time_awaited_writes(url: str) -> list[float]:
    database = Database(url)
    kernel = Kernel(database, Settings(database_url=url))
    org = f"org-{uuid.uuid4().hex[:8]}"
    for _ in range(50):  # warm up, and create the org
        await kernel.usage.update_counters(org, {"tokens": 1})
    samples = []
    for _ in range(DB_CALLS):
        start = time.perf_counter_ns()
        await kernel.usage.update_counters(org, {"tokens": 1})
        samples.append((time.perf_counter_ns() - start) / 1000)
    await database.dispose()
    return samples


def collect(postgres_url: str) -> list[dict[str, Any]]:
    """The rows; `postgres_url` names a database this may migrate and write to."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        sqlite_url = f"sqlite:///{scratch}/bench.db"
        migrated(sqlite_url)
        migrated(postgres_url)
        baselines = {
            "SQLite": asyncio.run(time_awaited_writes(sqlite_url)),
            "PostgreSQL": asyncio.run(time_awaited_writes(postgres_url)),
        }
        cpu_before = cpu_seconds()
        memory = time_track(None)
        spooled = time_track(Path(scratch) / "spool")
        generator_cpu = cpu_seconds() - cpu_before
    for label, samples in (("no spool", memory), ("spool", spooled)):
        for database, baseline in baselines.items():
            for stat, fraction in (("p50", 0.50), ("p99", 0.99)):
                rows.append(
                    row(
                        f"track() {label} {stat} vs awaited write ({database})",
                        "µs",
                        percentile(samples, fraction),
                        percentile(baseline, fraction),
                        {
                            "database": database,
                            "track_calls": TRACK_CALLS,
                            "baseline_calls": DB_CALLS,
                            "baseline": "await Kernel.update_usage_counters per call",
                            "tracker_cpu_seconds": round(generator_cpu, 2),
                        },
                    )
                )
    return rows


if __name__ == "__main__":
    run_alone(collect, __doc__)
