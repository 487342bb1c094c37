"""What the tests of every capability's routes share: the API through its ASGI app (httpx),
real tokens and keys, and the `api` fixture, one per database (conftest.py loads this file
as a plugin)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from billing_kernel.api.app import create_app
from billing_kernel.auth.rules import Scope
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from tests.conftest import new_id
from tests.live import SECRET


def user_token(user_id: str, *, secret: str = SECRET, **claims: Any) -> str:
    now = datetime.now(UTC)
    payload: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + timedelta(hours=1)}
    payload.update(claims)
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Api:
    """A client of the app, and the service behind it for arranging data."""

    client: httpx.AsyncClient
    kernel: Kernel
    database: Database

    async def key(self, *scopes: Scope, org_id: str | None = None) -> dict[str, str]:
        _, plaintext = await self.kernel.api_keys.create(scopes, org_id=org_id)
        return bearer(plaintext)

    async def member(
        self, org_id: str, role: MemberRole = MemberRole.MEMBER, *, plan: str = "starter"
    ) -> dict[str, str]:
        """A new user in `org_id` (created if needed), and their bearer header."""
        await self.kernel.orgs.create(org_id, plan_slug=plan)
        user_id = new_id("user")
        await self.kernel.members.add(org_id, user_id, role)
        return bearer(user_token(user_id))


def app_for(database: Database, **settings: Any) -> httpx.AsyncClient:
    config = Settings(database_url=str(database.url), jwt_secret=SECRET, **settings)
    app = create_app(config, database=database)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://kernel.test")


@pytest.fixture
async def own_api(own_database: Database) -> AsyncIterator[Api]:
    """The API on a database of the test's own: for what every org sees (the default plan,
    the metric catalogue)."""
    async with app_for(own_database) as client:
        settings = Settings(database_url=str(own_database.url))
        yield Api(client, Kernel(own_database, settings), own_database)


@pytest.fixture
async def api(database: Database) -> AsyncIterator[Api]:
    """The API through its ASGI app on each database, and a kernel for arranging data."""
    async with app_for(database) as client:
        yield Api(client, Kernel(database, Settings(database_url=str(database.url))), database)
