"""The kernel behind Debian's PgBouncer in transaction pooling mode (`?pgbouncer=true`), four
server connections shared by every client, so that transactions and single statements
move between them: the suites that race the kernel hardest run here again through it, and
what a pooler changes (prepared statements, LISTEN, a role set for a transaction,
migrations) is checked on its own."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from billing_kernel.commands import schema
from billing_kernel.db import migrate
from billing_kernel.db.database import EVENTS_CHANNEL, Database, notify
from billing_kernel.db.tables import orgs
from tests.conftest import Clock, _server_url, own_database_url, scratch_postgres_database
from tests.invoices import test_races as invoice_races
from tests.invoices.test_races import pg_api  # noqa: F401 (the races' fixture, used here)
from tests.live import kernel_command
from tests.pgbouncer import PGBOUNCER, PgBouncer, pgbouncer
from tests.quota import test_consume as consume
from tests.store import test_concurrency as concurrency
from tests.store import test_row_level_security as row_level_security
from tests.usage import test_api as usage_api

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def bouncer() -> Iterator[PgBouncer]:
    if not Path(PGBOUNCER).exists():
        message = f"{PGBOUNCER} is missing: `make test` installs Debian's pgbouncer"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with pgbouncer(_server_url(), server_connections=4) as running:
        yield running


@pytest.fixture(scope="module")
def direct_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of this module's own, on the server itself."""
    with own_database_url("postgres", tmp_path_factory.mktemp("pgbouncer")) as url:
        yield url


@pytest.fixture(scope="module")
def pooled_url(bouncer: PgBouncer, direct_url: str) -> str:
    return bouncer.url_for(direct_url)


# The fixtures the suites below take their database from, here through PgBouncer.
@pytest.fixture
def database_url(pooled_url: str) -> str:
    return pooled_url


@pytest.fixture
def postgres_url(pooled_url: str) -> str:
    return pooled_url


test_200_concurrent_records_sum_exactly = concurrency.test_200_concurrent_records_sum_exactly
test_concurrent_senders_of_one_key_count_it_once = (
    concurrency.test_concurrent_senders_of_one_key_count_it_once
)
test_concurrent_first_events_of_a_new_org_create_it_once = (
    concurrency.test_concurrent_first_events_of_a_new_org_create_it_once
)
test_200_concurrent_writers_cross_each_threshold_exactly_once = (
    concurrency.test_200_concurrent_writers_cross_each_threshold_exactly_once
)
test_of_concurrent_consumes_exactly_as_many_as_are_left_are_allowed = (
    consume.test_of_concurrent_consumes_exactly_as_many_as_are_left_are_allowed
)
test_concurrent_consumes_with_one_key_count_once_and_answer_alike = (
    consume.test_concurrent_consumes_with_one_key_count_once_and_answer_alike
)
test_concurrent_batches_with_overlapping_keys_count_each_key_once = (
    usage_api.test_concurrent_batches_with_overlapping_keys_count_each_key_once
)
test_mark_paid_racing_void_one_wins_and_the_other_is_told_why = (
    invoice_races.test_mark_paid_racing_void_one_wins_and_the_other_is_told_why
)
test_concurrent_payments_of_one_invoice_all_answer_paid_once = (
    invoice_races.test_concurrent_payments_of_one_invoice_all_answer_paid_once
)
test_a_user_of_org_a_reads_no_row_of_org_b = (
    row_level_security.test_a_user_of_org_a_reads_no_row_of_org_b
)
test_a_user_in_no_org_sees_nothing_and_the_kernel_role_sees_all = (
    row_level_security.test_a_user_in_no_org_sees_nothing_and_the_kernel_role_sees_all
)
test_service_calls_for_a_user_run_confined_to_their_orgs = (
    row_level_security.test_service_calls_for_a_user_run_confined_to_their_orgs
)


async def test_a_users_role_ends_with_their_transaction_on_a_shared_server_connection(
    pooled_url: str, clock: Clock
) -> None:
    """SET LOCAL lasts for its transaction: the next client's transaction on the same server
    connection runs as the kernel's own role again and sees every org."""
    database = Database(pooled_url, pool_size=20)
    try:
        org_a, _, user_a, _ = await row_level_security.two_orgs(database, clock)

        async def as_user() -> tuple[str, set[str]]:
            async with database.transaction(acting_user=user_a) as conn:
                role = (await conn.execute(text("SELECT current_user"))).scalar_one()
                seen = set((await conn.execute(select(orgs.c.org_id))).scalars())
                return role, seen

        async def as_kernel() -> tuple[str, int]:
            async with database.transaction() as conn:
                role = (await conn.execute(text("SELECT current_user"))).scalar_one()
                return role, (
                    await conn.execute(select(func.count()).select_from(orgs))
                ).scalar_one()

        answers = await asyncio.gather(*(as_user() if n % 2 else as_kernel() for n in range(80)))
        users = [a for n, a in enumerate(answers) if n % 2]
        kernels = [a for n, a in enumerate(answers) if not n % 2]
        assert users == [("billing_user", {org_a})] * 40
        assert {role for role, _ in kernels} == {"postgres"}
        assert min(count for _, count in kernels) >= 2
    finally:
        await database.dispose()


async def test_statements_outside_a_transaction_run_whole_on_whichever_server_connection(
    pooled_url: str,
) -> None:
    """The kernel's own reads run in autocommit, a statement at a time: through PgBouncer
    the statement is prepared and run on server connections that other clients share in
    between, and each still answers (an unnamed statement, parsed again where it runs)."""
    database = Database(pooled_url, pool_size=20)
    try:

        async def read(n: int) -> list[int]:
            async with database.read() as conn:
                query = text("SELECT g FROM generate_series(1, :n) AS g")
                return [
                    int(value) for value in (await conn.execute(query, {"n": n % 7 + 1})).scalars()
                ]

        answers = await asyncio.gather(*(read(n) for n in range(300)))
        assert answers == [list(range(1, n % 7 + 2)) for n in range(300)]
    finally:
        await database.dispose()


async def test_the_worker_is_woken_through_the_direct_url(pooled_url: str, direct_url: str) -> None:
    """LISTEN needs a session of its own: given BILLING_DATABASE_DIRECT_URL it listens
    there, and hears a commit made through PgBouncer."""
    listener = Database(pooled_url, direct_url=direct_url)
    writer = Database(pooled_url)
    heard = asyncio.Event()
    try:
        async with listener.listen(EVENTS_CHANNEL, heard.set):
            async with writer.transaction() as conn:
                await notify(conn, EVENTS_CHANNEL)
            await asyncio.wait_for(heard.wait(), timeout=30)
    finally:
        await listener.dispose()
        await writer.dispose()


async def test_without_a_direct_url_it_does_not_listen_through_the_pooler_and_says_so(
    pooled_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = Database(pooled_url)
    try:
        with caplog.at_level(logging.WARNING, logger="billing_kernel.db.database"):
            async with database.listen(EVENTS_CHANNEL, lambda: None):
                pass
        assert "BILLING_DATABASE_DIRECT_URL" in caplog.text
    finally:
        await database.dispose()


def test_migrate_runs_through_the_pooler(bouncer: PgBouncer) -> None:
    """`billing-kernel migrate` on an empty database through PgBouncer: every migration runs
    in its transaction, and the schema ends at head."""
    with scratch_postgres_database() as url:
        pooled = bouncer.url_for(url)
        output = kernel_command(pooled, "migrate")
        assert "created the billing-kernel schema" in output
        assert "up to date" in kernel_command(pooled, "migrate")
        state = asyncio.run(schema(pooled))
        assert (state.current, state.problem) == (migrate.head_revision(pooled), None)


def test_a_pooler_flag_on_a_sqlite_url_or_of_another_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL URL"):
        Database(f"sqlite:///{tmp_path / 'x.db'}?pgbouncer=true")
    with pytest.raises(ValueError, match="true or false"):
        Database("postgresql://postgres@127.0.0.1/x?pgbouncer=yes")
