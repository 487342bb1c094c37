"""One error model everywhere, request ids, and the health checks."""

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from sqlalchemy.engine import make_url

from billing_kernel.api.app import create_app
from billing_kernel.auth.rules import Scope
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.errors import InvalidInput
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from tests.conftest import _admin, migrate_with_demo_catalogue, new_id, scratch_name
from tests.live import SECRET
from tests.web import Api, app_for, bearer

pytestmark = pytest.mark.anyio


async def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    missing = await api.client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    wrong_method = await api.client.delete("/api/v1/billing/plans")
    assert (wrong_method.status_code, wrong_method.json()["code"]) == (405, "method_not_allowed")


async def test_the_request_id_is_echoed_or_made(api: Api) -> None:
    given = await api.client.get("/healthz", headers={"X-Request-Id": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    made = await api.client.get("/api/v1/billing/plans")
    assert len(made.headers["x-request-id"]) == 32
    assert made.json()["request_id"] == made.headers["x-request-id"]


async def test_a_failure_inside_is_a_500_problem_with_a_logged_request_id(
    api: Api, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _, key = await api.kernel.api_keys.create([Scope.QUOTA_CHECK])
    # A server that answers, but a database with none of the kernel's tables: not momentary.
    unmigrated = Database(make_url(postgres_url).set(database="postgres"))
    try:
        async with app_for(unmigrated) as client:
            with caplog.at_level(logging.ERROR, logger="billing_kernel.api"):
                response = await client.get(
                    "/api/v1/billing/plans", headers={"Authorization": f"Bearer {key}"}
                )
    finally:
        await unmigrated.dispose()
    assert response.status_code == 500
    problem = response.json()
    assert problem["code"] == "internal_error"
    assert "Traceback" not in response.text
    assert "api_keys" not in response.text
    assert response.headers["x-request-id"] == problem["request_id"]
    assert any(problem["request_id"] in record.getMessage() for record in caplog.records)


async def test_an_unreachable_database_is_a_503_the_caller_may_retry(api: Api) -> None:
    _, key = await api.kernel.api_keys.create([Scope.USAGE_WRITE])
    broken = Database("postgresql://postgres@127.0.0.1:9/billing")  # nothing listens on 9
    event = {"org_id": "org-a", "metric": "tokens", "quantity": 1, "idempotency_key": "k"}
    try:
        async with app_for(broken) as client:
            response = await client.post(
                "/api/v1/usage/events",
                json={"events": [event]},
                headers={"Authorization": f"Bearer {key}"},
            )
    finally:
        await broken.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    problem = response.json()
    assert problem["code"] == "database_unavailable"
    assert "127.0.0.1" not in response.text


async def test_a_database_refusing_connections_is_a_503_and_the_retry_counts_once(
    postgres_url: str,
) -> None:
    name = scratch_name()
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    await _admin(f'CREATE DATABASE "{name}"')
    database = Database(url)
    try:
        await anyio.to_thread.run_sync(migrate_with_demo_catalogue, url)
        kernel = Kernel(database, Settings(database_url=url))
        _, key = await kernel.api_keys.create([Scope.USAGE_WRITE])
        headers = {"Authorization": f"Bearer {key}"}

        def batch(key: str, quantity: int) -> dict[str, object]:
            event = {"org_id": "org-a", "metric": "tokens", "quantity": quantity}
            return {"events": [{**event, "idempotency_key": key}]}

        async with app_for(database) as client:
            first = await client.post("/api/v1/usage/events", json=batch("k1", 5), headers=headers)
            assert first.json()["accepted"] == 1  # the key is now verified and kept in memory
            await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await database.engine.dispose()  # the next request must open a new connection
            refused = await client.post(
                "/api/v1/usage/events", json=batch("k2", 7), headers=headers
            )
            not_ready = await client.get("/readyz")
            await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            retried = await client.post(
                "/api/v1/usage/events", json=batch("k2", 7), headers=headers
            )
        assert refused.status_code == 503, refused.text  # SQLSTATE 55000, not a 500
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "database_unavailable"
        assert name not in refused.text
        assert not_ready.status_code == 503
        assert retried.json()["accepted"] == 1
        usage = await kernel.summary.period_usage("org-a")
        assert usage.used["tokens"] == 12
    finally:
        await database.dispose()
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_a_problem_whose_detail_holds_a_lone_surrogate_is_sent_escaped(
    tmp_path: Path,
) -> None:
    """Every problem detail goes out ASCII-escaped, so one that quotes what a caller sent
    cannot fail to encode, whatever the message does with the value."""
    database = Database(f"sqlite:///{tmp_path / 'unused.db'}")
    app = create_app(Settings(database_url=str(database.url), jwt_secret=SECRET), database=database)

    async def refuse() -> None:
        raise InvalidInput("no org named a\ud800b", field="org_id")

    app.add_api_route("/test/refuse", refuse)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://kernel.test") as client:
            response = await client.get("/test/refuse")
    finally:
        await database.dispose()
    assert response.status_code == 422
    assert response.content.isascii()
    assert json.loads(response.content)["detail"] == "no org named a\ud800b"


async def test_health_and_readiness(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ready"}


async def test_not_ready_when_the_database_is_unreachable() -> None:
    broken = Database("postgresql://postgres@127.0.0.1:9/billing")
    try:
        async with app_for(broken) as client:
            response = await client.get("/readyz")
    finally:
        await broken.dispose()
    assert (response.status_code, response.json()["code"]) == (503, "not_ready")


async def test_openapi_documents_every_route_and_problem(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path in (
        "/api/v1/billing/plans",
        "/api/v1/billing/org/summary",
        "/api/v1/billing/org/plan",
        "/api/v1/billing/org/check",
        "/api/v1/usage/events",
        "/api/v1/orgs/{org_id}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    summary = paths["/api/v1/billing/org/summary"]["get"]
    assert "application/problem+json" in summary["responses"]["401"]["content"]
    assert summary["description"]
    docs = await api.client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text
    assert (await api.client.get("/docs-assets/swagger-ui-bundle.js")).status_code == 200


OPERATION_IDS = {
    ("get", "/api/v1/billing/plans"): "listPlans",
    ("get", "/api/v1/billing/metrics"): "listMetrics",
    ("put", "/api/v1/billing/metrics/{metric}"): "defineMetric",
    ("get", "/api/v1/billing/org/summary"): "getOrgSummary",
    ("post", "/api/v1/billing/org/plan"): "changeOrgPlan",
    ("post", "/api/v1/billing/org/check"): "checkQuota",
    ("post", "/api/v1/usage/events"): "recordUsageEvents",
    ("post", "/api/v1/usage/reservations"): "reserveUsage",
    ("post", "/api/v1/usage/reservations/{reservation_id}/commit"): "commitReservation",
    ("post", "/api/v1/usage/reservations/{reservation_id}/release"): "releaseReservation",
    ("get", "/api/v1/usage/reservations/{reservation_id}"): "getReservation",
    ("put", "/api/v1/orgs/{org_id}"): "putOrg",
    ("get", "/api/v1/orgs/{org_id}"): "getOrg",
    ("get", "/api/v1/orgs"): "listOrgs",
    ("get", "/api/v1/orgs/{org_id}/aliases"): "getOrgAliases",
    ("put", "/api/v1/orgs/{org_id}/aliases"): "putOrgAliases",
    ("get", "/api/v1/orgs/{org_id}/usage"): "getOrgUsage",
    ("get", "/api/v1/orgs/{org_id}/members"): "listOrgMembers",
    ("put", "/api/v1/orgs/{org_id}/members/{user_id}"): "putOrgMember",
    ("delete", "/api/v1/orgs/{org_id}/members/{user_id}"): "removeOrgMember",
    ("put", "/api/v1/billing/plans/{plan_slug}/metrics/{metric}/policy"): "putPlanPolicy",
    ("post", "/api/v1/billing/plans"): "createPlan",
    ("post", "/api/v1/billing/plans/{plan_slug}/deactivate"): "deactivatePlan",
    ("post", "/api/v1/billing/plans/{plan_slug}/default"): "setDefaultPlan",
    ("get", "/api/v1/billing/plans/{plan_slug}"): "getPlan",
    ("put", "/api/v1/billing/plans/{plan_slug}"): "updatePlan",
    ("get", "/api/v1/billing/plans/{plan_slug}/versions"): "listPlanVersions",
    ("post", "/api/v1/billing/plans/{plan_slug}/backtest"): "backtestPlan",
    ("get", "/api/v1/billing/org/invoices/upcoming"): "getUpcomingInvoice",
    ("get", "/api/v1/billing/org/invoices"): "listInvoices",
    ("get", "/api/v1/billing/org/invoices/{invoice_id}"): "getInvoice",
    ("get", "/api/v1/billing/org/invoices/{invoice_id}/lines/{number}"): "explainInvoiceLine",
    ("post", "/api/v1/billing/invoices/{invoice_id}/mark-paid"): "markInvoicePaid",
    ("post", "/api/v1/billing/invoices/{invoice_id}/void"): "voidInvoice",
    ("post", "/api/v1/billing/org/plan/preview"): "previewPlanChange",
    ("get", "/api/v1/billing/org/plan/scheduled"): "getScheduledPlanChange",
    ("delete", "/api/v1/billing/org/plan/scheduled"): "cancelScheduledPlanChange",
    ("get", "/api/v1/orgs/{org_id}/events"): "listOrgEvents",
    ("get", "/api/v1/orgs/{org_id}/events.csv"): "exportOrgEvents",
    ("get", "/api/v1/orgs/{org_id}/usage.csv"): "exportOrgUsage",
    ("get", "/api/v1/orgs/{org_id}/limits"): "getOrgLimits",
    ("get", "/api/v1/billing/org/entitlements"): "getOrgEntitlements",
    ("put", "/api/v1/orgs/{org_id}/features/{feature}"): "putOrgFeature",
    ("delete", "/api/v1/orgs/{org_id}/features/{feature}"): "deleteOrgFeature",
    ("post", "/api/v1/billing/coupons"): "createCoupon",
    ("get", "/api/v1/billing/coupons"): "listCoupons",
    ("get", "/api/v1/billing/coupons/{code}"): "getCoupon",
    ("post", "/api/v1/billing/coupons/{code}/archive"): "archiveCoupon",
    ("get", "/api/v1/orgs/{org_id}/coupons"): "listOrgCoupons",
    ("put", "/api/v1/orgs/{org_id}/coupons/{code}"): "applyCoupon",
    ("delete", "/api/v1/orgs/{org_id}/coupons/{code}"): "removeCoupon",
    ("put", "/api/v1/orgs/{org_id}/limits/{metric}"): "putOrgLimit",
    ("delete", "/api/v1/orgs/{org_id}/limits/{metric}"): "deleteOrgLimit",
    ("get", "/api/v1/orgs/{org_id}/alert-thresholds"): "getOrgAlertThresholds",
    ("put", "/api/v1/orgs/{org_id}/alert-thresholds/{metric}"): "putOrgAlertThresholds",
    ("delete", "/api/v1/orgs/{org_id}/alert-thresholds/{metric}"): "deleteOrgAlertThresholds",
    ("get", "/api/v1/orgs/{org_id}/alerts"): "listOrgAlerts",
    ("put", "/api/v1/billing/plans/{plan_slug}/metrics/{metric}/alert-thresholds"): (
        "putPlanAlertThresholds"
    ),
    ("get", "/api/v1/events"): "listEvents",
    ("post", "/api/v1/webhooks/endpoints"): "createWebhookEndpoint",
    ("get", "/api/v1/webhooks/endpoints"): "listWebhookEndpoints",
    ("get", "/api/v1/webhooks/endpoints/{endpoint_id}"): "getWebhookEndpoint",
    ("delete", "/api/v1/webhooks/endpoints/{endpoint_id}"): "deleteWebhookEndpoint",
    ("post", "/api/v1/webhooks/endpoints/{endpoint_id}/rotate-secret"): "rotateWebhookSecret",
    ("get", "/api/v1/webhooks/deliveries"): "listDeliveries",
    ("get", "/api/v1/webhooks/deliveries/{delivery_id}"): "getDelivery",
    ("post", "/api/v1/webhooks/deliveries/{delivery_id}/replay"): "replayDelivery",
    ("get", "/api/v1/orgs/{org_id}/notifications"): "getOrgNotifications",
    ("put", "/api/v1/orgs/{org_id}/notifications"): "putOrgNotifications",
    ("get", "/api/v1/sandbox/clock"): "getSandboxClock",
    ("post", "/api/v1/sandbox/clock/advance"): "advanceSandboxClock",
    ("post", "/api/v1/sandbox/clock"): "setSandboxClock",
    ("delete", "/api/v1/sandbox/clock"): "resetSandboxClock",
    ("post", "/api/v1/payments/stripe/webhook"): "receiveStripeWebhook",
    ("get", "/api/v1/billing/org/payment-method"): "getPaymentMethod",
    ("get", "/api/v1/billing/org/invoices/{invoice_id}/payments"): "listInvoicePayments",
    ("post", "/api/v1/billing/org/invoices/{invoice_id}/pay"): "createPayNowPage",
    ("post", "/api/v1/billing/invoices/{invoice_id}/credit-notes"): "createCreditNote",
    ("get", "/api/v1/billing/org/invoices/{invoice_id}/credit-notes"): "listInvoiceCreditNotes",
    ("get", "/healthz"): "getHealth",
    ("get", "/readyz"): "getReadiness",
    ("get", "/metrics"): "getMetrics",
}


async def test_every_operation_has_its_own_stable_readable_id(api: Api) -> None:
    """Generated clients name their methods after operationIds: each route has one written
    out, unique, and unchanged from release to release (a rename breaks callers' code)."""
    spec = (await api.client.get("/openapi.json")).json()
    found = {
        (method, path): operation["operationId"]
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }
    assert found == OPERATION_IDS
    assert len(set(found.values())) == len(found)
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)+", name) for name in found.values())


async def test_a_body_over_the_limit_is_refused_with_413_before_a_byte_is_written(
    database: Database,
) -> None:
    limit = 64 * 1024
    org_id = new_id()
    async with app_for(database, max_body_bytes=limit) as client:
        _, key = await Kernel(database, Settings(database_url=str(database.url))).api_keys.create(
            [Scope.USAGE_WRITE]
        )
        event = {"org_id": org_id, "metric": "tokens", "quantity": 1, "idempotency_key": "k"}
        body = json.dumps({"events": [event]}).encode()
        body += b" " * (limit - len(body))  # exactly at the limit: taken
        headers = {**bearer(key), "Content-Type": "application/json"}
        at_limit = await client.post("/api/v1/usage/events", content=body, headers=headers)
        assert at_limit.status_code == 200, at_limit.text

        over = dict(event, idempotency_key="over")
        body = json.dumps({"events": [over]}).encode()
        body += b" " * (limit + 1 - len(body))  # one byte over
        refused = await client.post("/api/v1/usage/events", content=body, headers=headers)
        assert refused.status_code == 413
        assert refused.json()["code"] == "payload_too_large"
        assert refused.headers["content-type"] == "application/problem+json"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as read
            yield body[: limit // 2]
            yield body[limit // 2 :]

        streamed = await client.post("/api/v1/usage/events", content=chunks(), headers=headers)
        assert streamed.status_code == 413
    kernel = Kernel(database, Settings(database_url=str(database.url)))
    assert (await kernel.summary.period_usage(org_id)).used["tokens"] == 1  # only the first


async def test_a_full_batch_of_the_longest_valid_events_fits_the_default_limit() -> None:
    event = {
        "org_id": "\u00e9" * 64,
        "metric": "m" * 64,
        "quantity": 10**12,
        "idempotency_key": "\u00e9" * 255,
        "occurred_at": "2026-11-24T09:15:00.123456+00:00",
    }
    escaped = json.dumps({"events": [event] * 1000}).encode()  # \u00e9: six bytes each
    assert len(escaped) < Settings().max_body_bytes


async def test_every_answer_carries_security_headers_and_pages_allow_no_script(api: Api) -> None:
    for path in ("/app/billing", "/api/v1/billing/plans", "/docs", "/healthz", "/nowhere"):
        response = await api.client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        assert response.headers["referrer-policy"] == "same-origin", path
        policy = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy, path
    page = (await api.client.get("/app/billing")).headers["content-security-policy"]
    assert "default-src 'none'" in page
    assert "script-src" not in page  # falls back to default-src 'none': no script runs


async def test_a_nul_byte_in_a_query_never_reaches_the_database(api: Api) -> None:
    """PostgreSQL cannot hold NUL in text: a filter or org named with one is refused before
    any route runs (found by fuzzing, as a 500), on the API and on the billing page alike."""
    admin = await api.key(Scope.BILLING_ADMIN)
    listed = await api.client.get("/api/v1/orgs", params={"plan": "star\x00ter"}, headers=admin)
    assert (listed.status_code, listed.json()["code"]) == (400, "bad_request"), listed.text
    assert "the query holds a NUL character" in listed.json()["detail"]
    member = await api.member(new_id(), MemberRole.OWNER)
    page = await api.client.get("/app/billing", params={"org": "a\x00b"}, headers=member)
    assert (page.status_code, page.json()["code"]) == (400, "bad_request"), page.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/usage/events"),  # read by the ingestion hot path
        ("POST", "/api/v1/webhooks/endpoints"),  # read by a route
        ("PUT", "/api/v1/orgs/acme"),
    ],
)
async def test_a_client_gone_before_its_body_is_read_is_logged_quietly(
    database: Database, caplog: pytest.LogCaptureFixture, method: str, path: str
) -> None:
    """What the server would log as "Exception in ASGI application": the app raising (as
    the ingestion hot path did). It returns, and no warning or error is logged."""
    app = create_app(Settings(database_url=str(database.url), jwt_secret=SECRET), database=database)
    _, plaintext = await Kernel(database, Settings(database_url=str(database.url))).api_keys.create(
        [Scope.BILLING_ADMIN, Scope.USAGE_WRITE]
    )
    messages = [
        {"type": "http.request", "body": b'{"events": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"kernel.test"),
            (b"authorization", f"Bearer {plaintext}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    with caplog.at_level(logging.DEBUG, logger="billing_kernel"):
        await app(scope, receive, send)  # raises nothing
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    if sent:  # a route's body parser answers 400 to a client that is no longer there
        assert sent[0]["status"] == 400
    else:  # raised where a middleware reads the body: noted at debug level only
        assert any("went away" in r.getMessage() for r in caplog.records)
