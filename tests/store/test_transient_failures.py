"""Momentary database failures surface as DatabaseUnavailable (HTTP 503, safe to retry), with
real failures from real servers: a role with no connections left, a locked SQLite file."""

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from billing_kernel.db.database import Database, failure_reason, is_transient
from billing_kernel.errors import DatabaseUnavailable
from tests.conftest import _admin, scratch_name

pytestmark = pytest.mark.anyio


async def test_too_many_clients_is_unavailable_not_a_crash(postgres_url: str) -> None:
    role = f"billing_limited_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    database = Database(make_url(postgres_url).set(username=role))
    try:
        with pytest.raises(DatabaseUnavailable) as raised:
            async with database.transaction():
                pass
        assert raised.value.status == 503
        assert role not in raised.value.message  # the reason is logged, not told
    finally:
        await database.dispose()
        await _admin(f'DROP ROLE "{role}"')


@pytest.mark.parametrize("how", ["transaction", "read"])
async def test_a_database_that_accepts_no_connections_now_is_unavailable(
    postgres_url: str, how: str
) -> None:
    name = scratch_name()
    await _admin(f'CREATE DATABASE "{name}"')
    await _admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')  # SQLSTATE 55000
    database = Database(make_url(postgres_url).set(database=name))
    try:
        with pytest.raises(DatabaseUnavailable):
            async with getattr(database, how)():
                pass
    finally:
        await database.dispose()
        await _admin(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_a_database_that_does_not_exist_is_unavailable_not_a_crash(
    postgres_url: str,
) -> None:
    database = Database(make_url(postgres_url).set(database=f"missing_{uuid.uuid4().hex[:8]}"))
    try:
        with pytest.raises(DatabaseUnavailable):
            async with database.read():
                pass
    finally:
        await database.dispose()


async def _sleep_past_a_statement_timeout(database: Database) -> None:
    async with database.transaction() as conn:
        await conn.execute(text("SET LOCAL statement_timeout = 50"))
        await conn.execute(text("SELECT pg_sleep(1)"))  # SQLSTATE 57014


async def test_a_statement_timeout_is_momentary(postgres_url: str) -> None:
    database = Database(postgres_url)
    try:
        with pytest.raises(DatabaseUnavailable):
            await _sleep_past_a_statement_timeout(database)
    finally:
        await database.dispose()


async def test_a_full_pool_waits_then_is_unavailable_never_grows(postgres_url: str) -> None:
    database = Database(postgres_url, pool_size=1, pool_timeout=0.3)
    try:
        async with database.transaction() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(DatabaseUnavailable):  # no overflow connection beside the one
                async with database.transaction():
                    pass
        async with database.transaction() as conn:  # free again once returned
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await database.dispose()


async def test_a_missing_table_is_not_transient(postgres_url: str) -> None:
    database = Database(make_url(postgres_url).set(database="postgres"))
    try:
        with pytest.raises(ProgrammingError) as raised:
            async with database.transaction() as conn:
                await conn.execute(text("SELECT * FROM usage_events"))
        assert not is_transient(raised.value)
    finally:
        await database.dispose()


def test_a_locked_sqlite_file_is_transient(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN IMMEDIATE")  # holds the write lock
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(OperationalError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
        assert is_transient(raised.value)
    finally:
        holder.rollback()
        holder.close()
        engine.dispose()


async def test_a_statements_failure_is_said_in_one_line_without_the_statement(
    database: Database,
) -> None:
    """What the closer records of an org it could not invoice: the database's own message,
    not the SQL or its parameters."""
    failing = "SELECT 1 / CAST(:zero AS INTEGER)" if database.is_postgresql else "SELECT nope"
    with pytest.raises(DBAPIError) as failed:
        async with database.transaction() as conn:
            await conn.execute(text(failing), {"zero": 0} if database.is_postgresql else {})
    reason = failure_reason(failed.value)
    assert reason == ("division by zero" if database.is_postgresql else "no such column: nope")
    assert failure_reason(ValueError("line one\nline two")) == "line one"
    assert failure_reason(ValueError()) == "ValueError"
