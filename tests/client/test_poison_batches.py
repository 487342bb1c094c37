"""A batch the kernel cannot take must not hold up the queue: the tracker narrows it down,
delivers every other event, and sets aside the one the kernel fails on. A kernel that is
down, or fails on everything, keeps every event. A refused API key is said at once."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from billing_kernel.api.app import create_app
from billing_kernel.auth.rules import Scope
from billing_kernel.client import AsyncHttpTransport, AsyncUsageTracker, TransportError
from billing_kernel.client.buffer import DEAD_LETTER_FILE
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from tests.client.fakes import FakeKernel
from tests.client.test_tracker import tracker
from tests.conftest import new_id
from tests.live import SECRET

FAST = {"max_delay": 0.01, "backoff_base": 0.001, "backoff_cap": 0.01}


# --- a real kernel that really fails on one event ----------------------------------------

POISON_PREFIX = "poison-"

_TRIGGERS = {
    "postgresql": [
        """CREATE FUNCTION fail_on_poison() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
             IF NEW.idempotency_key LIKE 'poison-%' THEN RAISE EXCEPTION 'poisoned event'; END IF;
             RETURN NEW;
           END $$""",
        """CREATE TRIGGER fail_on_poison BEFORE INSERT ON usage_events
           FOR EACH ROW EXECUTE FUNCTION fail_on_poison()""",
    ],
    "sqlite": [
        """CREATE TRIGGER fail_on_poison BEFORE INSERT ON usage_events
           WHEN NEW.idempotency_key LIKE 'poison-%'
           BEGIN SELECT RAISE(ABORT, 'poisoned event'); END""",
    ],
}
_DROP = {
    "postgresql": [
        "DROP TRIGGER IF EXISTS fail_on_poison ON usage_events",
        "DROP FUNCTION IF EXISTS fail_on_poison()",
    ],
    "sqlite": ["DROP TRIGGER IF EXISTS fail_on_poison"],
}


@pytest.fixture
async def failing_kernel(database: Database) -> AsyncIterator[tuple[httpx.AsyncClient, Database]]:
    """The real app on a database that fails (a 500) on any event keyed `poison-...`."""
    async with database.transaction() as conn:
        for statement in _TRIGGERS[database.dialect_name]:
            await conn.execute(text(statement))
    settings = Settings(database_url=str(database.url), jwt_secret=SECRET)
    _, key = await Kernel(database, settings).api_keys.create([Scope.USAGE_WRITE])
    app = create_app(settings, database=database)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://kernel.test",
        headers={"Authorization": f"Bearer {key}"},
    )
    try:
        yield client, database
    finally:
        await client.aclose()
        async with database.transaction() as conn:
            for statement in _DROP[database.dialect_name]:
                await conn.execute(text(statement))


@pytest.mark.anyio
async def test_one_event_the_kernel_fails_on_is_set_aside_and_the_rest_delivered(
    failing_kernel: tuple[httpx.AsyncClient, Database],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, database = failing_kernel
    org_id, poison = new_id(), f"{POISON_PREFIX}{new_id('key')}"
    transport = AsyncHttpTransport("http://kernel.test", "unused", client=client)
    with caplog.at_level(logging.WARNING, logger="billing_kernel.client"):
        tracker = AsyncUsageTracker(transport=transport, spool_dir=tmp_path, max_batch=500, **FAST)
        for n in range(60):
            tracker.track(org_id, "tokens", n + 1, idempotency_key=f"good-{n}")
            if n == 41:
                tracker.track(org_id, "tokens", 1000, idempotency_key=poison)
        # Every event but one is delivered: the queue is not held up.
        assert await tracker.flush(30)
        stats = tracker.stats()
        dead = tracker.dead_letters()
        await tracker.aclose(5)

    kernel = Kernel(database, Settings(database_url=str(database.url)))
    used = await kernel.summary.period_usage(org_id)
    assert used.used["tokens"] == sum(range(1, 61))  # each good event once, not the poison
    assert (stats.sent, stats.dead_lettered, stats.pending) == (60, 1, 0)
    assert stats.duplicates == 0  # parts that got through were never sent again
    assert [(d["idempotency_key"], d["quantity"]) for d in dead] == [(poison, 1000)]
    assert "500" in str(dead[0]["error"])
    kept = [json.loads(line) for line in (tmp_path / DEAD_LETTER_FILE).read_text().splitlines()]
    assert [k["idempotency_key"] for k in kept] == [poison]  # durable, in the spool directory
    told = [r for r in caplog.records if poison in r.getMessage()]
    assert len(told) == 1
    assert told[0].levelno == logging.ERROR


# --- the same rules against a kernel that is told how to fail ----------------------------


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
                occurred_at=datetime.fromisoformat(event["occurred_at"]),  # type: ignore[arg-type]
            )
        assert t.flush(10)
    assert (stats.sent, stats.dead_lettered, stats.pending) == (99, 1, 0)
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
    assert (stats.sent, stats.dead_lettered, stats.last_error) == (20, 0, None)
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
    assert (stats.sent, stats.retried, stats.dead_lettered) == (40, 8, 0)


def test_a_batch_refused_whole_is_split_and_only_the_bad_event_refused() -> None:
    kernel = FakeKernel()
    kernel.malformed = {"k7"}
    with tracker(kernel, max_batch=100, max_delay=30) as t:
        for n in range(16):
            t.track("acme", "tokens", 1, idempotency_key=f"k{n}")
        assert t.flush(10)
        stats = t.stats()
    assert kernel.totals() == {"acme": 15}
    assert (stats.sent, stats.refused, stats.dead_lettered) == (15, 1, 0)


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
    assert (stats.refused, stats.sent) == (6, 1)
    assert kernel.totals() == {"acme": 5}


# --- a refused API key --------------------------------------------------------------------


def test_a_refused_key_is_reported_at_once_logged_rarely_and_the_events_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kernel = FakeKernel()
    kernel.failures = [TransportError("kernel answered 401: bad key", retryable=True, status=401)]
    kernel.failures *= 10**6
    with caplog.at_level(logging.WARNING, logger="billing_kernel.client"):
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
    monkeypatch.setattr("billing_kernel.client.core.AUTH_LOG_SECONDS", 0.2)
    kernel = FakeKernel()
    kernel.failures = [TransportError("kernel answered 401", retryable=True, status=401)]
    kernel.failures *= 10**6
    with caplog.at_level(logging.ERROR, logger="billing_kernel.client"):
        t = tracker(kernel, backoff_cap=0.01)
        t.track("acme", "tokens", 1)
        time.sleep(1.0)
        refusals = t.stats().unauthorized
        t.close(0.1)
    said = [r for r in caplog.records if "refused the tracker's API key" in r.getMessage()]
    assert refusals > 20  # refused many times...
    assert 2 <= len(said) <= 6  # ...said once per interval of 0.2 s, not once per refusal


@pytest.mark.anyio
async def test_a_wrong_key_against_a_real_kernel_is_reported_within_a_second(
    database: Database,
) -> None:
    settings = Settings(database_url=str(database.url), jwt_secret=SECRET)
    app = create_app(settings, database=database)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://kernel.test",
        headers={"Authorization": "Bearer bk_wrong_key"},
    )
    transport = AsyncHttpTransport("http://kernel.test", "unused", client=client)
    async with AsyncUsageTracker(transport=transport, max_delay=0.01) as tracker:
        tracker.track("acme", "tokens", 1)
        started = time.monotonic()
        assert not await tracker.flush(30)
        elapsed = time.monotonic() - started
        stats = tracker.stats()
    assert elapsed < 1.0
    assert (stats.unauthorized, stats.pending) == (1, 1)
    assert "401" in str(stats.last_error)
