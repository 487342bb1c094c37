"""The kernel's Prometheus instruments: one set per deployment.

Under `serve --workers N` each worker process writes its samples to files in the directory
`PROMETHEUS_MULTIPROC_DIR` names (`serve` makes one before the workers start), and a scrape of
`/metrics` sums them, so one set is reported whichever worker answers. A process on its own
(one worker, `billing-kernel worker`, a test) keeps them in memory."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

REQUESTS = Counter(
    "billing_http_requests",
    "HTTP requests answered, by route (its template), method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "billing_http_request_duration_seconds",
    "Time from a request's first byte received to its answer's last byte sent, by route.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS = Counter(
    "billing_usage_events",
    "Usage events judged, by outcome: accepted, duplicate (a repeat, counted once), conflict "
    "(a key reused with another payload) or refused.",
    ["outcome"],
)
DECISIONS = Counter(
    "billing_quota_decisions",
    "Quota decisions made, by kind (check, consume) and outcome (allowed, refused).",
    ["kind", "outcome"],
)
DELIVERIES = Counter(
    "billing_deliveries",
    "Delivery attempts of alerts and billing events (webhook, Slack, email), by the state "
    "each left its delivery in: delivered, pending (to be tried again), failed (no attempt "
    "left) or skipped (no one to send it to).",
    ["outcome"],
)
CLOSE_FAILURES = Counter(
    "billing_close_failures",
    "Rounds of the period closer that failed (the database away), or in which an org's "
    "invoice could not be made (an `invoice.close_failed` event says which); each is retried.",
)
HEARTBEAT = Gauge(
    "billing_worker_heartbeat_timestamp_seconds",
    "When each background task of a worker last began a round (Unix time).",
    ["task"],
    multiprocess_mode="max",
)
POOL_IN_USE = Gauge(
    "billing_db_pool_connections_in_use",
    "Database connections checked out of the pools of the kernel's processes.",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "billing_db_pool_connections",
    "Database connections the pools of the kernel's processes hold (in use or idle).",
    multiprocess_mode="livesum",
)
REPLICA_LAG = Gauge(
    "billing_replica_lag_seconds",
    "How far behind the primary the read replica was at the last probe (the most of any "
    "process's); -1 when it could not be told (behind every position noted, or away).",
    multiprocess_mode="max",
)
REPLICA_READS = Counter(
    "billing_replica_reads",
    "Reads that may lag (the billing page, read-back lists, exports), by where they were "
    "served: `replica`, or `primary` when the replica was behind its bound or away.",
    ["served_by"],
)


def beat(task: str) -> None:
    """A background task begins a round."""
    HEARTBEAT.labels(task).set(time.time())


def multiprocess_directory() -> str | None:
    """Where the worker processes of `serve --workers N` keep their samples, if they do."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def counted() -> CollectorRegistry:
    """What the processes counted: this one's, or with PROMETHEUS_MULTIPROC_DIR the sum of
    every process's that writes there."""
    directory = multiprocess_directory()
    if directory is None:
        return REGISTRY
    every_process = CollectorRegistry()
    multiprocess.MultiProcessCollector(every_process, path=directory)  # type: ignore[no-untyped-call]
    return every_process


def serve_metrics(host: str, port: int) -> Callable[[], None]:
    """`counted()` in Prometheus's format at http://host:port/metrics, from a thread of its
    own, for a process that serves no API (`billing-kernel worker --metrics-port`); returns
    what stops it. Unauthenticated: what protects it is where it listens."""
    server, thread = start_http_server(port, host, counted())

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
