"""Server time of the billing page (`GET /app/billing`, one service call and one render)
next to the summary service call alone, in the same run, on SQLite and PostgreSQL.

Usage: python bench/dashboard_page.py [--server URL-of-PostgreSQL-server]
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from billing_kernel.api.app import create_app
from billing_kernel.auth.tokens import issue_token
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from common import on_both_databases, percentile_rows, run_alone

SECRET = "bench-secret-0123456789-0123456789-0123456789"
CALLS = 300


async def measure(url: str) -> tuple[list[float], list[float]]:
    settings = Settings(database_url=url, jwt_secret=SECRET)
    database = Database(url)
    kernel = Kernel(database, settings)
    org, user = f"org-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    await kernel.orgs.create(org, plan_slug="starter")
    await kernel.members.add(org, user, MemberRole.OWNER)
    for n in range(200):
        await kernel.usage.record(org, "tokens", 1_000 + n, idempotency_key=f"k{n}")
    app = create_app(settings, database=database)
    token = issue_token(SECRET, user, datetime.now(UTC), timedelta(hours=1))
    page_times, summary_times = [], []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://bench"
    ) as client:
        for _ in range(20):  # warm up
            await client.get("/app/billing", cookies={"billing-auth-token": token})
        for _ in range(CALLS):
            start = time.perf_counter()
            response = await client.get("/app/billing", cookies={"billing-auth-token": token})
            page_times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
            start = time.perf_counter()
            await kernel.for_user(user).summary.summary(org)
            summary_times.append((time.perf_counter() - start) * 1000)
    await database.dispose()
    return page_times, summary_times


def collect(postgres_url: str) -> list[dict[str, Any]]:
    """The rows; `postgres_url` names a database this may migrate and write to."""
    rows = []
    for name, (page, summary) in on_both_databases(postgres_url, measure):
        rows += percentile_rows(
            f"dashboard page {{stat}} vs summary call ({name})",
            page,
            summary,
            {
                "database": name,
                "calls": CALLS,
                "client": "in-process ASGI (no network)",
                "baseline": "Kernel.build_org_billing_summary as the user",
            },
        )
    return rows


if __name__ == "__main__":
    run_alone(collect, __doc__)
