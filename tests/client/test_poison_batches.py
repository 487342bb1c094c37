"""A batch the kernel cannot take must not hold up the queue: the tracker narrows it down,
delivers every other event, and sets aside the one the kernel fails on. A kernel that is
down, or fails on everything, keeps every event. A refused API key is said at once."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from billing_kernel.api.app import create_app
from billing_kernel.auth.rules import Scope
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel_sdk import AsyncHttpTransport, AsyncUsageTracker
from billing_kernel_sdk._buffer import DEAD_LETTER_FILE
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
    with caplog.at_level(logging.WARNING, logger="billing_kernel_sdk"):
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
    assert (stats.accepted, stats.dead_lettered, stats.pending) == (60, 1, 0)
    assert stats.duplicates == 0  # parts that got through were never sent again
    assert [(d["idempotency_key"], d["quantity"]) for d in dead] == [(poison, 1000)]
    assert "500" in str(dead[0]["error"])
    kept = [json.loads(line) for line in (tmp_path / DEAD_LETTER_FILE).read_text().splitlines()]
    assert [k["idempotency_key"] for k in kept] == [poison]  # durable, in the spool directory
    told = [r for r in caplog.records if poison in r.getMessage()]
    assert len(told) == 1
    assert told[0].levelno == logging.ERROR


# --- the same rules against a kernel that is told how to fail ----------------------------


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
