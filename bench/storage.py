"""Bytes on disk per stored usage event on PostgreSQL (its `usage_event_keys` and
`usage_events` rows and its `usage_lines`, tables, indexes and TOAST, after VACUUM) next to
the event's JSON as sent, for the capacity arithmetic of docs/scaling.md: reports of one
metric's quantity (one line each), and named LLM events with three properties that two
meters count (two lines each), written through the kernel's own batches.

Usage: python bench/storage.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg

from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.metrics.rules import Aggregation, Metric
from billing_kernel.usage.rules import UsageReport
from common import migrated, row, run_alone

EVENTS = 100_000
BATCH = 1_000
ORGS = 100
MODELS = ("gpt-5", "claude-sonnet-4", "gemini-2.5-pro")


def reports(batch: int) -> list[UsageReport]:
    return [
        UsageReport(f"store-{n % ORGS}", "tokens", 100 + n % 997, f"r-{batch}-{n}")
        for n in range(BATCH)
    ]


def named(batch: int) -> list[UsageReport]:
    return [
        UsageReport(
            f"store-{n % ORGS}",
            None,
            None,
            f"llm_{uuid.uuid4().hex}",  # as an LLM response's id: 36 characters
            properties={"tokens": 100 + n % 997, "model": MODELS[n % 3], "feature": "chat"},
            event="llm.completion",
        )
        for n in range(BATCH)
    ]


async def sizes(dsn: str) -> dict[str, tuple[int, int]]:
    """(rows, bytes) of usage_event_keys, usage_events and usage_lines, after VACUUM."""
    conn = await asyncpg.connect(dsn.replace("postgresql+asyncpg", "postgresql"))
    try:
        found = {}
        for table in ("usage_event_keys", "usage_events", "usage_lines"):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
            size = await conn.fetchval(  # a partitioned table's bytes are its partitions'
                f"SELECT pg_total_relation_size('{table}') + coalesce((SELECT "
                "sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                f"WHERE inhparent = '{table}'::regclass), 0)"
            )
            found[table] = (int(rows), int(size))
        return found
    finally:
        await conn.close()


async def measure(dsn: str) -> dict[str, Any]:
    database = Database(dsn)
    kernel = Kernel(database, Settings(database_url=dsn))
    try:
        for n in range(ORGS):
            await kernel.orgs.create(f"store-{n}", plan_slug="starter")
        for key, aggregation, value in (
            ("llm_tokens", Aggregation.SUM, "tokens"),
            ("llm_calls", Aggregation.COUNT, None),
        ):
            await kernel.metrics.define(
                Metric(key, key, "tokens", aggregation, ("llm.completion",), value)
            )
        empty = await sizes(dsn)
        for batch in range(EVENTS // BATCH):
            await kernel.usage.record_batch(reports(batch))
        after_reports = await sizes(dsn)
        for batch in range(EVENTS // BATCH):
            await kernel.usage.record_batch(named(batch))
        after_named = await sizes(dsn)
    finally:
        await database.dispose()

    def per_row(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> Any:
        return {
            table: (after[table][1] - before[table][1]) / max(1, after[table][0] - before[table][0])
            for table in after
        }

    return {
        "reports": per_row(empty, after_reports),
        "named": per_row(after_reports, after_named),
        "lines per named event": (after_named["usage_lines"][0] - after_reports["usage_lines"][0])
        / EVENTS,
    }


def sent_bytes(report: UsageReport) -> int:
    """The event's JSON as a sender sends it."""
    body: dict[str, Any] = {"org_id": report.org_id, "idempotency_key": report.idempotency_key}
    if report.event is None:
        body |= {"metric": report.metric, "quantity": report.quantity}
    else:
        body |= {"event": report.event, "properties": report.properties}
    body["occurred_at"] = "2026-12-03T09:30:00.000Z"
    return len(json.dumps(body, separators=(",", ":")))


def collect(postgres_url: str) -> list[dict[str, Any]]:
    migrated(postgres_url)
    found = asyncio.run(measure(postgres_url))
    rows = []
    for kind, label, sample in (
        ("reports", "report of a quantity", reports(0)),
        ("named", "named LLM event, two meters", named(0)),
    ):
        keys, events = found[kind]["usage_event_keys"], found[kind]["usage_events"]
        lines = found[kind]["usage_lines"]
        per_event_lines = 1.0 if kind == "reports" else found["lines per named event"]
        stored = keys + events + lines * per_event_lines
        sent = sum(sent_bytes(r) for r in sample) / len(sample)
        setup = {
            "events": EVENTS,
            "orgs": ORGS,
            "usage_event_keys bytes per event": round(keys),
            "usage_events bytes per event": round(events),
            "usage_lines bytes per line": round(lines),
            "lines per event": per_event_lines,
            "baseline": "the event's JSON as sent",
        }
        rows.append(row(f"stored bytes per {label} vs its JSON", "bytes", stored, sent, setup))
    return rows


if __name__ == "__main__":
    run_alone(collect, __doc__)
