"""BILLING_DATABASE_REPLICA_URL against a real hot standby streaming from its primary (two
clusters of the test's own): reads that may lag go to it while it is within its bound, and
to the primary when it falls behind or goes away; decisions and writes never go to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import asyncpg
import pytest
from sqlalchemy import func, select, text

from billing_kernel.auth.rules import Scope
from billing_kernel.config import Settings
from billing_kernel.db.database import Database
from billing_kernel.db.tables import org_billing_state
from billing_kernel.db.unit_of_work import UnitOfWork
from billing_kernel.kernel import Kernel
from billing_kernel.members.rules import MemberRole
from billing_kernel.orgs.repository import OrgRepository
from billing_kernel.orgs.rules import OrgOrigin
from tests.api.test_telemetry import samples, value
from tests.conftest import migrate_with_demo_catalogue, new_id
from tests.replica import Pair, streaming_pair
from tests.web import Api, app_for, bearer, user_token

pytestmark = [pytest.mark.anyio, pytest.mark.long]


@pytest.fixture(scope="module")
def pair() -> Iterator[Pair]:
    with streaming_pair() as running:
        yield running


@pytest.fixture(scope="module")
def urls(pair: Pair) -> tuple[str, str]:
    """The kernel's database on the primary, migrated, and the same on the replica."""

    async def create() -> None:
        conn = await asyncpg.connect(f"{pair.primary}/postgres")
        try:
            await conn.execute("CREATE DATABASE billing")
        finally:
            await conn.close()

    asyncio.run(create())
    migrate_with_demo_catalogue(f"{pair.primary}/billing")
    return f"{pair.primary}/billing", f"{pair.replica}/billing"


@pytest.fixture
async def database(urls: tuple[str, str]) -> AsyncIterator[Database]:
    primary, replica = urls
    db = Database(primary, pool_size=5, replica_url=replica, replica_max_lag=1.0)
    yield db
    await db.dispose()


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.05)


async def served_by_replica(database: Database, acting_user: str | None = None) -> bool:
    """Whether a read that may lag is answered by the standby."""
    async with database.read(acting_user=acting_user, may_lag=True) as conn:
        return bool((await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one())


async def on_replica(database: Database) -> bool:
    return await served_by_replica(database)


async def on_primary(database: Database) -> bool:
    return not await served_by_replica(database)


async def test_reads_that_may_lag_go_to_the_replica_and_nothing_else_does(
    database: Database,
) -> None:
    await until(lambda: on_replica(database), "the replica serves")
    async with database.read(acting_user=new_id("user"), may_lag=True) as conn:
        row = (await conn.execute(text("SELECT pg_is_in_recovery(), current_user"))).one()
        assert tuple(row) == (True, "billing_user")  # confined there as here
    async with database.read() as conn:
        assert (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one() is False
    async with database.transaction() as conn:
        assert (await conn.execute(text("SELECT pg_is_in_recovery()"))).scalar_one() is False


async def test_a_replica_behind_its_bound_is_skipped_until_it_has_caught_up(
    database: Database, pair: Pair
) -> None:
    kernel = Kernel(database, Settings(database_url=str(database.url)))
    lags: list[float | None] = []
    served: list[str] = []
    database.observe_replica(lag=lags.append, read_from=served.append)
    await until(lambda: on_replica(database), "the replica serves")
    assert (served[-1], lags[-1] is not None and lags[-1] <= 1.0) == ("replica", True)
    await pair.on_replica("SELECT pg_wal_replay_pause()")
    try:
        await kernel.orgs.create(new_id())  # the primary moves on; the replica does not
        await until(lambda: on_primary(database), "the stalled replica is skipped")
        assert served[-1] == "primary"
        assert lags[-1] is None or lags[-1] > 1.0  # as the metrics say it
        await kernel.orgs.create(new_id())
        assert [await on_primary(database) for _ in range(20)] == [True] * 20
    finally:
        await pair.on_replica("SELECT pg_wal_replay_resume()")
    await until(lambda: on_replica(database), "the replica serves again")


async def test_a_replica_that_is_down_is_skipped_without_an_error(
    database: Database, pair: Pair
) -> None:
    await until(lambda: on_replica(database), "the replica serves")
    pair.stop_replica()
    try:
        assert [await on_primary(database) for _ in range(20)] == [True] * 20
    finally:
        pair.start_replica()
    await until(lambda: on_replica(database), "the replica serves again")


@pytest.fixture
async def api(urls: tuple[str, str]) -> AsyncIterator[Api]:
    """The API on the primary, its replica allowed an hour behind: while its replay is
    paused it is still read, and shows the state from before the pause."""
    primary, replica = urls
    db = Database(primary, pool_size=5, replica_url=replica, replica_max_lag=3600)
    settings = {"database_replica_url": replica, "replica_max_lag_seconds": 3600}
    async with app_for(db, **settings) as client:
        yield Api(client, Kernel(db, Settings(database_url=primary, **settings)), db)
    await db.dispose()


async def test_lists_exports_and_the_billing_page_read_the_replica_and_checks_the_primary(
    api: Api, pair: Pair
) -> None:
    kernel, org_id = api.kernel, new_id()
    owner = await api.member(org_id, MemberRole.OWNER)
    await kernel.usage.record(org_id, "tokens", 1_111, idempotency_key="before")
    admin = await api.key(Scope.BILLING_ADMIN, Scope.QUOTA_CHECK, org_id=org_id)

    async def listed() -> list[int]:
        answer = await api.client.get(f"/api/v1/orgs/{org_id}/events", headers=admin)
        return [event["quantity"] for event in answer.json().get("data", [])]

    async def replica_has_it() -> bool:
        return await on_replica(api.database) and await listed() == [1_111]

    await until(replica_has_it, "the replica serves, with the first event")
    reader = await api.key(Scope.METRICS_READ)
    before = samples((await api.client.get("/metrics", headers=reader)).text)
    await pair.on_replica("SELECT pg_wal_replay_pause()")
    try:
        await kernel.usage.record(org_id, "tokens", 2_222, idempotency_key="after")
        assert await listed() == [1_111]  # the list: the replica, as it stood
        export = await api.client.get(f"/api/v1/orgs/{org_id}/events.csv", headers=admin)
        assert (export.status_code, export.text.count("\n")) == (200, 2)  # header and one
        history = await api.client.get(f"/api/v1/orgs/{org_id}/usage", headers=admin)
        assert history.json()["data"][-1]["usage"]["tokens"] == 1_111
        check = await api.client.post(
            "/api/v1/billing/org/check", json={"metric": "tokens"}, headers=admin
        )
        assert check.json()["used"] == 3_333  # a decision: the primary
        summary = await api.client.get("/api/v1/billing/org/summary", headers=admin)
        used = {line["metric"]: line["used"] for line in summary.json()["usage"]}
        assert used["tokens"] == 3_333  # what a backend reads back after writing: the primary
        page = (await api.client.get("/app/billing", headers=owner)).text
        assert 'aria-valuenow="1111"' in page
        api.client.cookies.set("billing-wrote", "1", path="/app")  # a change made on the page
        page = (await api.client.get("/app/billing", headers=owner)).text
        assert 'aria-valuenow="3333"' in page  # its own change shows: the primary
        after = samples((await api.client.get("/metrics", headers=reader)).text)
        reads = "billing_replica_reads_total"
        grew = {
            where: value(after, reads, served_by=where) - value(before, reads, served_by=where)
            for where in ("replica", "primary")
        }
        assert grew["replica"] >= 4  # the list, the export, the history, the page
        assert grew["primary"] == 0  # within its bound, none went elsewhere
        assert value(after, "billing_replica_lag_seconds") >= 0
    finally:
        await pair.on_replica("SELECT pg_wal_replay_resume()")
        api.client.cookies.clear()
    await until(lambda: _equals(listed, [1_111, 2_222]), "the replica caught up")


async def _equals(read: Callable[[], Awaitable[object]], expected: object) -> bool:
    return await read() == expected


async def test_the_page_of_an_org_whose_state_must_be_seeded_is_read_on_the_primary(
    api: Api,
) -> None:
    """The billing state is seeded on first use, which a replica cannot do: the page reads
    the primary instead, and seeds it."""
    org_id, user_id = new_id(), new_id("user")
    async with api.database.transaction() as conn:
        await OrgRepository(UnitOfWork(conn)).ensure_orgs([org_id], api.kernel.now(), OrgOrigin.API)
    await api.kernel.members.add(org_id, user_id, MemberRole.OWNER)
    assert await states_of(api.database, org_id) == 0
    answer = await api.client.get("/app/billing", headers=bearer(user_token(user_id)))
    assert answer.status_code == 200
    assert f"Billing · {org_id}" in answer.text
    assert await states_of(api.database, org_id) == 1


async def states_of(database: Database, org_id: str) -> int:
    async with database.read() as conn:
        query = select(func.count()).where(org_billing_state.c.org_id == org_id)
        return int((await conn.execute(query)).scalar_one())
