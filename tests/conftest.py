"""Shared fixtures: a real SQLite file and a real PostgreSQL database, both migrated.

Each test process migrates one template per backend, once: a SQLite file, and a PostgreSQL
database on the server named by BILLING_TEST_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432). Every database a test uses is a copy of it (the file
copied; `CREATE DATABASE ... TEMPLATE`), made in a fraction of a migration's time, and
dropped after it. Without a reachable server the PostgreSQL tests are skipped, except under
CI=true, where that fails the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from billing_kernel.config import Settings
from billing_kernel.db import migrate
from billing_kernel.db.database import Database
from billing_kernel.db.tables import metadata, usage_counters
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.demo import seed_catalogue
from billing_kernel.kernel import Kernel
from billing_kernel.plans.repository import PlanRepository
from billing_kernel.plans.rules import Plan, PlanMetric

DEFAULT_TEST_SERVER = "postgresql://postgres@127.0.0.1:5432"

# The suite's receivers listen on 127.0.0.1: most tests deliver there, as in dev mode. The
# tests of the outbound URL policy set `allow_private_webhooks=False` themselves.
os.environ.setdefault("BILLING_ALLOW_PRIVATE_WEBHOOKS", "true")
BACKENDS = ["sqlite", "postgres"]

pytest_plugins = ["tests.web"]  # the `api` fixture every capability's route tests use


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `long` suites first, each module's tests still together and in order: the test
    processes take the longest work first and finish together, not one waiting on the
    other's last fuzzing run."""
    items.sort(key=lambda item: item.get_closest_marker("long") is None)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def scratch_name() -> str:
    """A new PostgreSQL database name: BILLING_TEST_DATABASE_PREFIX (default billing_test_),
    so that several checkouts, or other projects, can share one server, then a random
    part."""
    prefix = os.environ.get("BILLING_TEST_DATABASE_PREFIX", "billing_test_")
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", prefix):
        raise pytest.UsageError(
            "BILLING_TEST_DATABASE_PREFIX must be 1-41 lowercase letters, digits and _, "
            f"not starting with a digit, got {prefix!r}"
        )
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _server_url() -> str:
    return os.environ.get("BILLING_TEST_POSTGRES_URL", DEFAULT_TEST_SERVER)


async def _admin(sql: str) -> None:
    url = make_url(_server_url()).set(database="postgres")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def scratch_postgres_database(options: str = "") -> Iterator[str]:
    """A new, empty PostgreSQL database for the block (made with CREATE DATABASE `options`),
    dropped after it."""
    name = scratch_name()
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}" {options}'))
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL at {_server_url()} is not usable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield make_url(_server_url()).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def migrate_with_demo_catalogue(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` (to `revision`) and seed the demo's metrics and plans,
    which most tests use (internal-dev the default new orgs start on)."""
    migrate.upgrade(url, revision)

    async def seed() -> None:
        kernel = Kernel.open(Settings(database_url=url))
        try:
            await seed_catalogue(kernel)
        finally:
            await kernel.aclose()

    asyncio.run(seed())


class _Templates:
    """The migrated templates of this test process (with the demo catalogue), made on first
    use."""

    directory: Path | None = None
    sqlite: Path | None = None
    postgres: str | None = None
    """The template database's name."""
    _scratch: ExitStack = ExitStack()

    @classmethod
    def sqlite_file(cls) -> Path:
        if cls.sqlite is None:
            assert cls.directory is not None, "the session has not started"
            cls.sqlite = cls.directory / "template.db"
            migrate_with_demo_catalogue(f"sqlite:///{cls.sqlite}")
        return cls.sqlite

    @classmethod
    def postgres_name(cls) -> str:
        if cls.postgres is None:
            url = cls._scratch.enter_context(scratch_postgres_database())
            migrate_with_demo_catalogue(url)
            cls.postgres = make_url(url).database
        return cls.postgres

    @classmethod
    def close(cls) -> None:
        cls._scratch.close()


@pytest.fixture(scope="session", autouse=True)
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _Templates.directory = tmp_path_factory.mktemp("templates")
    yield
    _Templates.close()


@contextmanager
def own_database_url(backend: str, directory: Path) -> Iterator[str]:
    """A migrated database of the block's own, a copy of the template: a SQLite file in
    `directory`, or a scratch PostgreSQL database."""
    if backend == "sqlite":
        path = directory / "billing.db"
        shutil.copyfile(_Templates.sqlite_file(), path)
        yield f"sqlite:///{path}"
        return
    with scratch_postgres_database(f'TEMPLATE "{_Templates.postgres_name()}"') as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The SQLite database the tests of this process share (each keeps to ids of its own)."""
    with own_database_url("sqlite", tmp_path_factory.mktemp("sqlite")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL database the tests of this process share."""
    with own_database_url("postgres", tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def own_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of the test's own, on each backend: for tests that look at every
    org's rows (closing every due invoice, verifying every invoice)."""
    with own_database_url(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def own_database(own_url: str) -> AsyncIterator[Database]:
    database = Database(own_url, pool_size=20)
    yield database
    await database.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database of the test module's own, on each backend: for tests that change
    what every org sees (the metric catalogue), which would show in other tests."""
    with own_database_url(request.param, tmp_path_factory.mktemp("own")) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test that uses this runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, pool_size=20)
    yield db
    await db.dispose()


@pytest.fixture
async def pg_database(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(postgres_url, pool_size=20)
    yield db
    await db.dispose()


class Clock:
    """The service's clock, set by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 5, 15, 12, 0, tzinfo=UTC))


def make_kernel(database: Database, clock: Clock, **settings: object) -> Kernel:
    return Kernel(
        database,
        Settings(database_url=str(database.url), **settings),
        clock=clock,  # type: ignore[arg-type]
    )


@pytest.fixture
def kernel(database: Database, clock: Clock) -> Kernel:
    return make_kernel(database, clock)


async def save_plan(database: Database, now: datetime, *, active: bool = True) -> Plan:
    """A new plan of the test's own (tokens only: 500 included, then 0.50 per 1,000)."""
    plan = Plan(
        slug=new_id("plan"),
        name="Custom",
        currency="USD",
        monthly_price=Decimal("9.99"),
        is_active=active,
        metrics={"tokens": PlanMetric("tokens", 500, Decimal("0.5"), 1000)},
    )
    async with database.transaction() as conn:
        await PlanRepository(UnitOfWork(conn)).create_plan(plan, now)
    return plan


def new_id(prefix: str = "org") -> str:
    """An id no other test uses, so tests share one database without interfering."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def row_counts(database: Database) -> dict[str, int]:
    """Rows per table and the sum of all counters: equal before and after means nothing written."""
    async with database.transaction() as conn:
        counts = {
            table.name: (await conn.execute(select(func.count()).select_from(table))).scalar_one()
            for table in metadata.sorted_tables
        }
        for column in (usage_counters.c.quantity, usage_counters.c.reserved):
            counts[f"sum(usage_counters.{column.name})"] = (
                await conn.execute(select(func.coalesce(func.sum(column), 0)))
            ).scalar_one()
    return counts
