"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

import billing_kernel.notifications.routes as notification_routes
from billing_kernel import __version__
from billing_kernel.alerts import routes as alert_routes
from billing_kernel.api import health
from billing_kernel.auth.tokens import TokenVerifier
from billing_kernel.background import background_tasks
from billing_kernel.compat import lago, openmeter, polar, stripe
from billing_kernel.config import Settings, get_settings
from billing_kernel.credit_notes import routes as credit_note_routes
from billing_kernel.dashboard import routes as dashboard_routes
from billing_kernel.db.database import Database
from billing_kernel.db.migrate import head_revision
from billing_kernel.discounts import routes as discount_routes
from billing_kernel.errors import ConfigurationError
from billing_kernel.events import routes as event_routes
from billing_kernel.features import routes as feature_routes
from billing_kernel.invoices import routes as invoice_routes
from billing_kernel.kernel import Kernel
from billing_kernel.members import routes as member_routes
from billing_kernel.metrics import routes as metric_routes
from billing_kernel.notifications.outbound import Resolver
from billing_kernel.orgs import routes as org_routes
from billing_kernel.payments import routes as payment_routes
from billing_kernel.plans import routes as plan_routes
from billing_kernel.quota import routes as quota_routes
from billing_kernel.quota.hot_path import QuotaCheckHotPath
from billing_kernel.quota.routes import CHECK_PATH
from billing_kernel.reservations import routes as reservation_routes
from billing_kernel.sandbox import routes as sandbox_routes
from billing_kernel.sandbox.routes import SandboxClockMiddleware
from billing_kernel.subscriptions import routes as subscription_routes
from billing_kernel.summary import routes as summary_routes
from billing_kernel.telemetry import routes as telemetry_routes
from billing_kernel.telemetry.instruments import (
    POOL_IN_USE,
    POOL_SIZE,
    REPLICA_LAG,
    REPLICA_READS,
)
from billing_kernel.telemetry.logs import configure as configure_logs
from billing_kernel.telemetry.middleware import TelemetryMiddleware
from billing_kernel.telemetry.tracing import Tracing
from billing_kernel.telemetry.tracing import requested as tracing_requested
from billing_kernel.usage import routes as usage_routes
from billing_kernel.usage.hot_path import IngestHotPath
from billing_kernel.usage.routes import INGEST_PATH
from billing_kernel.web.guards import (
    BodyLimitMiddleware,
    NoNulMiddleware,
    SecurityHeadersMiddleware,
)
from billing_kernel.web.problems import (
    ClientGoneMiddleware,
    RequestIdMiddleware,
    install_problem_handlers,
    problem_responses,
)

DESCRIPTION = """\
Plans, per-org monthly usage and quota decisions.

**Authentication.** Users send a JWT (`Authorization: Bearer <jwt>` or the auth cookie);
services send an API key (`Authorization: Bearer bk_...`) with scopes `usage:write`,
`quota:check` or `billing:admin`. The org a request is about is named by `X-Org-Id` (a user
in exactly one org may leave it out).

**Errors** are RFC 9457 problem details (`application/problem+json`) with a stable `code`.
"""


DOCS_ASSETS_URL = "/docs-assets"


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """The API. Refuses to build with unsafe settings (a missing or default JWT secret
    outside dev mode). A `database` passed in stays the caller's to dispose; `resolver`
    resolves outbound URLs' hosts (the system's by default)."""
    settings = settings or get_settings()
    problems = settings.problems_for_serving()
    if problems:
        raise ConfigurationError("refusing to start: " + "; ".join(problems))
    owned = database is None
    kernel = (
        Kernel.open(settings, resolver=resolver)
        if database is None
        else Kernel(database, settings, resolver=resolver)
    )

    tracing = Tracing() if tracing_requested() else None
    if tracing is not None:
        tracing.watch(kernel.database)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        background = background_tasks(kernel) if settings.worker_in_server else []
        running = [asyncio.create_task(task.run()) for task in background]
        yield
        for task in background:
            task.stop()
        await asyncio.gather(*running)
        if owned:
            await kernel.aclose()
        if tracing is not None:
            tracing.shutdown()  # what is batched goes out

    # /docs and /redoc with their scripts and styles served from here, not from a CDN: the
    # interactive docs work on an offline or locked-down host.
    app = FastAPIOffline(
        title="billing-kernel",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        static_url=DOCS_ASSETS_URL,
        # The kernel's own spans and metrics (telemetry/), never a second set from FastAPI.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.database = kernel.database
    app.state.kernel = kernel
    app.state.verifier = TokenVerifier(settings)
    app.state.schema_head = head_revision(settings.database_url)
    install_problem_handlers(app)
    # The last added runs first: a client gone before its request was read is quiet, a
    # request id for everything, security headers on every answer (a 413 included), no NUL
    # in a path, query or header, then the body limit before any route reads a byte, then
    # the hot paths of ingestion and the quota check (see web/hot_path.py).
    app.add_middleware(QuotaCheckHotPath)
    app.add_middleware(IngestHotPath)
    if kernel.sandbox.enabled:  # dev mode: the sandbox clock, read before every request
        app.add_middleware(SandboxClockMiddleware, sandbox=kernel.sandbox)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(NoNulMiddleware)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(ClientGoneMiddleware)
    # Outermost: every answer counted and timed, with BILLING_LOG_FORMAT=json logged, and
    # traced when OpenTelemetry's variables name a collector.
    app.add_middleware(
        TelemetryMiddleware,
        known_paths=(INGEST_PATH, CHECK_PATH),
        log_requests=settings.log_format == "json",
        tracing=tracing,
    )
    configure_logs(settings.log_format)
    kernel.database.observe_pool(in_use=POOL_IN_USE.inc, connections=POOL_SIZE.inc)
    kernel.database.observe_replica(
        lag=lambda behind: REPLICA_LAG.set(-1 if behind is None else behind),
        read_from=lambda where: REPLICA_READS.labels(where).inc(),
    )
    for router in (
        plan_routes.router,
        metric_routes.router,
        summary_routes.router,
        summary_routes.history_router,
        subscription_routes.router,
        invoice_routes.router,
        quota_routes.router,
        quota_routes.limits_router,
        feature_routes.router,
        feature_routes.own_router,
        discount_routes.router,
        discount_routes.own_router,
        usage_routes.router,
        usage_routes.events_router,
        reservation_routes.router,
        org_routes.router,
        member_routes.router,
        alert_routes.router,
        alert_routes.plan_router,
        event_routes.events_router,
        notification_routes.router,
        notification_routes.settings_router,
        health.router,
        sandbox_routes.router,
        payment_routes.router,
        payment_routes.billing,
        credit_note_routes.router,
        telemetry_routes.router,
    ):
        app.include_router(router, responses=problem_responses(400, 500, 503))
    app.include_router(dashboard_routes.router)
    for protocol in (lago, openmeter, stripe, polar):  # each answers in its own shapes
        app.include_router(protocol.router)
    return app


def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document, as `GET /openapi.json` serves it. It depends on no setting,
    so it is built without a configured database or secret (nothing is connected to)."""
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:", dev_mode=True))
    return app.openapi()
