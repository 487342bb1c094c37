"""The migrations run forward, back and forward again on both databases."""

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select, text

from billing_kernel.config import Settings
from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from billing_kernel.db.tables import metadata, plans
from billing_kernel.kernel import Kernel
from billing_kernel.plans.rules import SOFT
from billing_kernel.quota.rules import Terms
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


def test_the_head_the_commands_check_against_is_alembics() -> None:
    """Every command compares the database's revision with `head_revision`, which reads the
    migrations' files without Alembic: it names the head Alembic migrates to."""
    alembic = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert migrate.head_revision("sqlite://") == alembic.get_current_head()
    assert len(alembic.get_revisions("heads")) == 1


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    migrate.upgrade(empty_database_url)  # already at head: a no-op
    assert asyncio.run(plan_count(empty_database_url)) == 4
    migrate.downgrade(empty_database_url, "base")
    migrate.upgrade(empty_database_url)
    assert asyncio.run(plan_count(empty_database_url)) == 4


def schema_drift(url: str) -> list[object]:
    """What the migrated schema lacks or has beyond the tables the code declares."""

    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async def run() -> list[object]:
        database = Database(url)
        try:
            async with database.transaction() as conn:
                return await conn.run_sync(compare)
        finally:
            await database.dispose()

    return asyncio.run(run())


def test_the_migrations_build_the_schema_the_code_declares(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)
    assert schema_drift(empty_database_url) == []


def test_upgrading_keeps_every_limit_soft_and_every_override_a_limit(
    empty_database_url: str,
) -> None:
    migrate.upgrade(empty_database_url, "0003")
    created = "2026-10-01 08:00:00+00:00"

    async def arrange() -> None:
        database = Database(empty_database_url)
        try:
            async with database.transaction() as conn:
                for sql in (
                    f"INSERT INTO orgs (org_id, created_at) VALUES ('acme', '{created}')",
                    "INSERT INTO org_billing_state (org_id, plan_slug, status, created_at, "
                    f"updated_at) VALUES ('acme', 'starter', 'trial', '{created}', '{created}')",
                    "INSERT INTO org_limit_overrides (org_id, metric, included_quantity, "
                    f"updated_at) VALUES ('acme', 'tokens', 5, '{created}')",
                ):
                    await conn.execute(text(sql))
        finally:
            await database.dispose()

    asyncio.run(arrange())
    migrate.upgrade(empty_database_url)

    async def read() -> tuple[object, ...]:
        kernel = Kernel(Database(empty_database_url), Settings(database_url=empty_database_url))
        try:
            state = await kernel.subscriptions.billing_state("acme")
            starter = await kernel.plans.get("starter")
            return (
                state.status_since == state.created_at,
                {term.policy for term in starter.metrics.values()},
                (await kernel.quota.terms("acme"))["tokens"],
            )
        finally:
            await kernel.aclose()

    assert asyncio.run(read()) == (True, {SOFT}, Terms(5, SOFT))
