"""What the kernel tells its operators: `/metrics` (who may read it, requests by route
template, events and decisions by outcome, the outbox read at the scrape) in one process; and
against a real `serve --workers 2` with BILLING_LOG_FORMAT=json, one set of metrics summed
over the workers and one JSON line per request with its request id, org and caller, never a
token."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from billing_kernel.auth.rules import Scope
from billing_kernel.db.database import Database
from tests.conftest import Clock, make_kernel, new_id, own_database_url
from tests.live import KernelServer, free_port, kernel_command, start_worker, worker_pids
from tests.web import Api

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scrape: Samples, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.anyio
async def test_metrics_need_their_scope_and_count_by_route_template_and_outcome(api: Api) -> None:
    reader = await api.key(Scope.METRICS_READ)
    assert (await api.client.get("/metrics")).status_code == 401
    checker = await api.key(Scope.QUOTA_CHECK)
    refused = await api.client.get("/metrics", headers=checker)
    assert refused.status_code == 403
    assert "metrics:read" in refused.json()["detail"]
    on_an_org = await api.client.get(
        "/api/v1/billing/org/summary", headers={**reader, "X-Org-Id": new_id()}
    )
    assert on_an_org.status_code == 403  # it grants nothing on any org

    before = samples((await api.client.get("/metrics", headers=reader)).text)
    org = new_id()
    writer = await api.key(Scope.USAGE_WRITE, Scope.QUOTA_CHECK)
    events = [
        {"org_id": org, "metric": "tokens", "quantity": 5, "idempotency_key": key}
        for key in ("a", "b", "a")
    ] + [{"org_id": org, "metric": "nope", "quantity": 1, "idempotency_key": "c"}]
    sent = await api.client.post("/api/v1/usage/events", json={"events": events}, headers=writer)
    assert sent.status_code == 200, sent.text
    check = {"metric": "tokens", "amount": 1}
    checked = await api.client.post(
        "/api/v1/billing/org/check", json=check, headers={**writer, "X-Org-Id": org}
    )
    assert checked.status_code == 200, checked.text
    admin = await api.key(Scope.BILLING_ADMIN)
    for missing in ("ghost-1", "ghost-2"):  # two ids, one series: the template
        assert (await api.client.get(f"/api/v1/orgs/{missing}", headers=admin)).status_code == 404
    answer = await api.client.get("/metrics", headers=reader)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    after = samples(answer.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "billing_http_requests_total"
    assert grew(requests, route="/api/v1/usage/events", method="POST", status="200") == 1
    assert grew(requests, route="/api/v1/billing/org/check", method="POST", status="200") == 1
    assert grew(requests, route="/api/v1/orgs/{org_id}", method="GET", status="404") == 2
    assert grew(requests, route="/metrics", method="GET", status="200") == 1  # the first scrape
    assert not any("ghost" in dict(labels).get("route", "") for _, labels in after), (
        "a raw path made a series of its own"
    )
    latency = "billing_http_request_duration_seconds_count"
    assert grew(latency, route="/api/v1/usage/events", method="POST") == 1
    assert grew("billing_usage_events_total", outcome="accepted") == 2
    assert grew("billing_usage_events_total", outcome="duplicate") == 1
    assert grew("billing_usage_events_total", outcome="refused") == 1
    assert grew("billing_quota_decisions_total", kind="check", outcome="allowed") == 1
    for gauge in (
        "billing_outbox_undispatched_events",
        "billing_outbox_undispatched_age_seconds",
        "billing_outbox_pending_deliveries",
        "billing_outbox_pending_age_seconds",
        "billing_months_awaiting_close",
        "billing_usage_lines_in_default_partition",
    ):
        assert (gauge, ()) in after
        assert value(after, gauge) >= 0


@pytest.mark.anyio
async def test_months_awaiting_close_count_each_orgs_closed_months_without_an_invoice(
    own_database: Database,
) -> None:
    """Two orgs from March and one from May, seen on 10 May: March and April have closed,
    May has not. Four months await until the closer runs; a voided invoice's correction
    keeps its month closed."""
    clock = Clock(datetime(2026, 3, 10, 12, tzinfo=UTC))
    kernel = make_kernel(own_database, clock)
    for org_id in ("march-a", "march-b"):
        await kernel.orgs.create(org_id, plan_slug="starter")
    clock.now = datetime(2026, 5, 1, 23, tzinfo=UTC)  # April's grace (24 h) has not passed
    await kernel.orgs.create("may", plan_slug="starter")
    assert await kernel.telemetry.months_awaiting_close() == 2  # March, of both
    clock.now = datetime(2026, 5, 10, tzinfo=UTC)
    assert await kernel.telemetry.months_awaiting_close() == 4  # and April
    closed = await kernel.invoices.close_due()
    assert len(closed.closed) == 4
    assert await kernel.telemetry.months_awaiting_close() == 0
    await kernel.invoices.void(closed.closed[0].invoice_id, reason="wrong")
    assert await kernel.telemetry.months_awaiting_close() == 0


def test_json_logs_and_metrics_summed_over_workers(postgres_url: str, tmp_path: Path) -> None:
    """Two workers, each with its own socket: however the connections fall, a scrape reports
    every request once; every request is a JSON line, with the id its caller gave (or its
    trace's), the org, and the key by its id, and no token anywhere."""
    log = tmp_path / "kernel.log"
    key = kernel_command(postgres_url, "api-keys", "create", "--scopes", "usage:write,quota:check")
    reader = kernel_command(postgres_url, "api-keys", "create", "--scopes", "metrics:read")
    server = KernelServer(
        postgres_url, workers=2, env={"BILLING_LOG_FORMAT": "json"}, log=log
    ).start()
    try:
        assert len(worker_pids(server.process.pid)) == 2  # type: ignore[union-attr]
        org = new_id()
        made = httpx.post(
            f"{server.url}/api/v1/usage/events",
            json={"events": [{"org_id": org, "metric": "tokens", "quantity": 1,
                              "idempotency_key": "first"}]},
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        assert made.status_code == 200, made.text  # the org, made by its first event
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        sent = 0
        for n in range(24):  # a new connection each: spread over both workers' sockets
            with httpx.Client(base_url=server.url) as client:
                headers = {"Authorization": f"Bearer {key}"}
                if n == 0:
                    headers["traceparent"] = f"00-{trace}-00f067aa0ba902b7-01"
                elif n == 1:
                    headers["X-Request-Id"] = "given-id-1"
                answer = client.post(
                    "/api/v1/billing/org/check",
                    json={"metric": "tokens", "amount": 1},
                    headers={**headers, "X-Org-Id": org},
                )
                assert answer.status_code == 200, answer.text
                sent += 1
        counted = set()
        for _ in range(6):  # whichever worker answers the scrape: the same sum
            with httpx.Client(base_url=server.url) as client:
                scrape = samples(
                    client.get("/metrics", headers={"Authorization": f"Bearer {reader}"}).text
                )
            counted.add(
                value(
                    scrape,
                    "billing_http_requests_total",
                    route="/api/v1/billing/org/check",
                    method="POST",
                    status="200",
                )
            )
        assert counted == {sent}
    finally:
        server.stop()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    checks = [line for line in lines if line.get("route") == "/api/v1/billing/org/check"]
    assert len(checks) == sent
    assert checks[0]["request_id"] == trace
    assert checks[1]["request_id"] == "given-id-1"
    assert {line["org_id"] for line in checks} == {org}
    key_id = key.removeprefix("bk_").partition("_")[0]
    assert {line["caller"] for line in checks} == {f"key:{key_id}"}
    assert all(line["status"] == 200 and line["duration_ms"] > 0 for line in checks)
    assert all(line["level"] == "info" and line["method"] == "POST" for line in checks)
    everything = log.read_text()
    for secret in (key, reader):
        assert secret not in everything


def test_a_worker_serves_its_own_metrics_on_an_address_of_its_own(tmp_path: Path) -> None:
    with own_database_url("postgres", tmp_path) as url:
        port = free_port()
        worker = start_worker(url, "--metrics-port", str(port))
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    scrape = samples(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
                except httpx.TransportError:
                    scrape = {}
                if value(scrape, "billing_worker_heartbeat_timestamp_seconds", task="deliveries"):
                    break
                assert worker.poll() is None, "the worker exited"
                assert time.monotonic() < deadline, "no heartbeat was served"
                time.sleep(0.05)
            assert value(scrape, "billing_close_failures_total") == 0
            assert ("billing_close_failures_total", ()) in scrape
        finally:
            worker.terminate()
            assert worker.wait(30) == 0
