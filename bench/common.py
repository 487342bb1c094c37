"""Shared by the benchmarks: percentiles, the results table, and bench/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
from tests.conftest import migrate_with_demo_catalogue as migrated

RESULTS = Path(__file__).parent / "results" / "latest.json"
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = "billing_bench"


def server_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        default=DEFAULT_SERVER,
        help=f"PostgreSQL server; the benchmark makes its own database there, {DB_NAME!r}",
    )


def run_alone(collect: Callable[[str], list[dict[str, Any]]], description: str | None) -> None:
    """A benchmark script run by itself: its rows on a fresh database, and the table."""
    parser = argparse.ArgumentParser(description=description)
    server_argument(parser)
    report(collect(asyncio.run(fresh_database(parser.parse_args().server))))


async def fresh_database(server_url: str) -> str:
    """An empty database for the run (dropped and made anew); its URL."""
    admin = await asyncpg.connect(f"{server_url}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await admin.close()
    return f"{server_url}/{DB_NAME}"


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds() -> float:
    """CPU time used by this process so far (user + system): the load generator's own cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def row(
    name: str, unit: str, kernel: float, baseline: float, setup: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": name,
        "unit": unit,
        "kernel": round(kernel, 3),
        "baseline": round(baseline, 3),
        "ratio": round(kernel / baseline, 4) if baseline else None,
        "setup": setup,
    }


def report(rows: list[dict[str, Any]]) -> None:
    """Print the table and merge the rows into bench/results/latest.json (by name)."""
    width = max(len(r["name"]) for r in rows)
    print(f"{'benchmark':<{width}}  {'unit':<8} {'kernel':>12} {'baseline':>12} {'ratio':>9}")
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.4f}"
        print(
            f"{r['name']:<{width}}  {r['unit']:<8} {r['kernel']:>12,.3f} "
            f"{r['baseline']:>12,.3f} {ratio:>9}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    names = {r["name"] for r in rows}
    merged = [r for r in existing if r["name"] not in names] + rows
    RESULTS.write_text(json.dumps(merged, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


def on_both_databases(
    postgres_url: str, measure: Callable[[str], Any]
) -> Iterator[tuple[str, Any]]:
    """`measure(url)` (a coroutine function) on a scratch SQLite file and on `postgres_url`,
    each migrated first: each database's name and what it measured."""
    with tempfile.TemporaryDirectory() as scratch:
        targets = {"SQLite": f"sqlite:///{scratch}/bench.db", "PostgreSQL": postgres_url}
        for name, url in targets.items():
            migrated(url)
            yield name, asyncio.run(measure(url))


def percentile_rows(
    label: str, kernel: Sequence[float], baseline: Sequence[float], setup: dict[str, Any]
) -> list[dict[str, Any]]:
    """A p50 and a p99 row (in ms) of `label`, which holds `{stat}` where they differ."""
    return [
        row(
            label.format(stat=stat),
            "ms",
            percentile(kernel, fraction),
            percentile(baseline, fraction),
            setup,
        )
        for stat, fraction in (("p50", 0.5), ("p99", 0.99))
    ]
