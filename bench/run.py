"""`make bench`: every benchmark in one run, one table, and bench/results/latest.json.

The kernel against the raw database (ingestion, checks, summary, growth), what `track()` costs
the product next to an awaited write, the billing page next to the summary call, and how long
an alert takes from the write that crossed a threshold to the webhook, how long closing
a month of 10,000 orgs takes, the incumbents' protocols next to native ingestion, and the
kernel through PgBouncer next to a direct connection, all on one
fresh PostgreSQL database (and a scratch SQLite file for the in-process rows).

Usage: python bench/run.py [--server URL] [--growth-events N] [--workers N]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import alert_latency
import compat_ingest
import dashboard_page
import kernel_vs_raw
import period_close
import pgbouncer
import track_overhead
from common import fresh_database, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    kernel_vs_raw.arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    dsn = asyncio.run(fresh_database(args.server))
    rows = asyncio.run(kernel_vs_raw.run(dsn, args.growth_events, args.workers))
    rows += track_overhead.collect(dsn)
    rows += dashboard_page.collect(dsn)
    rows += alert_latency.collect(dsn)
    rows += period_close.collect(dsn)
    rows += compat_ingest.collect(dsn)
    rows += pgbouncer.collect(dsn)
    report(rows)
    print(f"make bench took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
