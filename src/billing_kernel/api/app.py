"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from billing_kernel import __version__
from billing_kernel.api.problems import (
    RequestIdMiddleware,
    install_problem_handlers,
    problem_responses,
)
from billing_kernel.api.routes import billing, health, orgs, usage
from billing_kernel.auth.tokens import TokenVerifier
from billing_kernel.config import Settings, get_settings
from billing_kernel.dashboard import routes as dashboard_routes
from billing_kernel.errors import ConfigurationError
from billing_kernel.service import BillingService
from billing_kernel.store.database import Database
from billing_kernel.store.migrate import head_revision

DESCRIPTION = """\
Plans, per-org monthly usage and quota decisions.

**Authentication.** Users send a JWT (`Authorization: Bearer <jwt>` or the auth cookie);
services send an API key (`Authorization: Bearer bk_...`) with scopes `usage:write`,
`quota:check` or `billing:admin`. The org a request is about is named by `X-Org-Id` (a user
in exactly one org may leave it out).

**Errors** are RFC 9457 problem details (`application/problem+json`) with a stable `code`.
"""


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """The API. Refuses to build with unsafe settings (a missing or default JWT secret
    outside dev mode). A `database` passed in stays the caller's to dispose."""
    settings = settings or get_settings()
    problems = settings.problems_for_serving()
    if problems:
        raise ConfigurationError("refusing to start: " + "; ".join(problems))
    owned = database is None
    db = database or Database(settings.database_url, pool_size=settings.db_pool_size)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            await db.dispose()

    app = FastAPI(
        title="billing-kernel", version=__version__, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.settings = settings
    app.state.database = db
    app.state.service = BillingService(db, settings)
    app.state.verifier = TokenVerifier(settings)
    app.state.schema_head = head_revision(settings.database_url)
    install_problem_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    for module in (billing, usage, orgs, health):
        app.include_router(module.router, responses=problem_responses(400, 500, 503))
    app.include_router(dashboard_routes.router)
    return app
