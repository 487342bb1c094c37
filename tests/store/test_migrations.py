"""The migrations run forward, back and forward again on both databases."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from billing_kernel.db.tables import plans
from tests.conftest import scratch_postgres_database


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        with scratch_postgres_database() as url:
            yield url


async def plan_count(url: str) -> int:
    database = Database(url)
    try:
        async with database.transaction() as conn:
            return int((await conn.execute(select(func.count()).select_from(plans))).scalar_one())
    finally:
        await database.dispose()


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    migrate.upgrade(empty_database_url)  # already at head: a no-op
    assert asyncio.run(plan_count(empty_database_url)) == 4
    migrate.downgrade(empty_database_url, "base")
    migrate.upgrade(empty_database_url)
    assert asyncio.run(plan_count(empty_database_url)) == 4
