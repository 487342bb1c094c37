"""The engine, its transactions, and the little that differs between SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Table, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from billing_kernel.db.replica import ReplicaGate
from billing_kernel.errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

USER_ROLE = "billing_user"
"""The PostgreSQL role whose queries row-level security confines to the acting user's orgs."""
USER_SETTING = "billing.user_id"
"""The transaction-local setting that names the acting user to the RLS policies."""

SQLITE_BUSY_TIMEOUT_MS = 30_000

_TRANSIENT_SQLSTATES = (
    "08",  # connection exception: refused, lost, or failed while connecting
    "53",  # insufficient resources: too many clients, out of memory, disk full
    "57P",  # operator intervention: shutting down, starting up, database dropped
    "57014",  # query_canceled: statement_timeout under load, or a cancel request
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "40003",  # statement_completion_unknown: the connection broke during COMMIT
    "55P03",  # lock_not_available: lock_timeout
    "25006",  # read_only_sql_transaction: a demoted primary during failover, or maintenance
)
"""PostgreSQL errors inside a transaction that a retry may not meet again (SQLSTATE classes
and codes, from PostgreSQL's table of error codes). Anything else, such as a missing table
(42P01) or a value it cannot store (22xxx), is a fault to fix, not to retry. A failure to
connect at all is momentary whatever its code (see `_connection`)."""
_SQLITE_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


def is_transient(exc: BaseException) -> bool:
    """Whether a database failure is momentary, so the caller may simply retry."""
    if isinstance(exc, OSError | PoolTimeout):  # refused, dropped, or no pooled connection free
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if isinstance(state, str):
        return state.startswith(_TRANSIENT_SQLSTATES)
    return getattr(exc.orig, "sqlite_errorcode", None) in _SQLITE_BUSY_CODES


def failure_reason(exc: BaseException) -> str:
    """Why a statement failed, in one line, without the statement or its parameters (the
    database's own message for a database error)."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = str(cause).strip().splitlines()
    first = lines[0] if lines else type(cause).__name__
    return first.split(">: ", 1)[-1][:500]  # asyncpg's errors say "<class '...'>: " first


def async_url(url: str | URL) -> URL:
    """`url` with the kernel's async driver: asyncpg for PostgreSQL, aiosqlite for SQLite;
    ValueError for anything else."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"not a database URL: {str(url)!r}") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, enforced foreign keys, and `BEGIN IMMEDIATE` so that a transaction takes the write
    lock up front instead of failing to upgrade a read lock halfway through."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


POOLER_PARAMETER = "pgbouncer"
"""The database URL's query parameter that says it reaches PostgreSQL through a pooler in
transaction mode (`?pgbouncer=true`: PgBouncer's `pool_mode = transaction`, or any pooler
that hands a server connection to a client for one transaction only)."""


def through_transaction_pooler(url: URL) -> bool:
    """Whether `url` says it goes through a transaction pooler (see POOLER_PARAMETER);
    ValueError for a value other than true or false, or for a SQLite URL that says so."""
    value = url.query.get(POOLER_PARAMETER)
    if value is None:
        return False
    if value not in ("true", "false"):
        raise ValueError(f"{POOLER_PARAMETER}= in the database URL must be true or false")
    if value == "true" and url.get_backend_name() != "postgresql":
        raise ValueError(f"{POOLER_PARAMETER}=true is for a PostgreSQL URL")
    return value == "true"


class Database:
    """One database: an async engine and the transactions the service runs in."""

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int = 10,
        pool_timeout: float = 30.0,
        echo: bool = False,
        direct_url: str | URL | None = None,
        replica_url: str | URL | None = None,
        replica_max_lag: float = 5.0,
        pre_ping: bool = False,
    ) -> None:
        self.url = async_url(url)
        self.dialect_name = self.url.get_backend_name()
        self.transaction_pooling = through_transaction_pooler(self.url)
        self.direct_url = async_url(direct_url) if direct_url is not None else None
        """Where LISTEN connects: PostgreSQL itself, when `url` reaches it through a
        transaction pooler, which would hand the listening session's server connection to
        other clients."""
        options: dict[str, Any] = {"echo": echo}
        if self.transaction_pooling:
            # Behind a transaction pooler each transaction, and each statement outside one,
            # may run on another server connection, which other clients share. With both
            # statement caches off, asyncpg prepares every statement unnamed and parses it
            # again in the message sequence that runs it: nothing is looked up on a server
            # connection that another one prepared, no name can collide with another
            # client's, and nothing is left behind (the unnamed statement is replaced by the
            # next). Named statements, SQLAlchemy's suggestion for PgBouncer, would pile up
            # on the server connections until PgBouncer closed them.
            options["connect_args"] = {
                "statement_cache_size": 0,
                "prepared_statement_cache_size": 0,
            }
        if self.is_postgresql:
            # No pre-ping on the primary: it costs a round trip per checkout. A connection that
            # died with a database restart fails its request once (a 503 callers retry) and is
            # replaced. A replica's are pinged: one gone away is found before the read starts,
            # which then goes to the primary.
            # No overflow: connections beyond the pool would be closed on return and opened
            # again under sustained load (p99 of checks at concurrency 16: 49 -> 20 ms); a
            # request waits for a free connection instead, up to `pool_timeout` seconds, and
            # is then a 503.
            # LIFO: at low concurrency the same few connections serve, with their prepared
            # statements warm, instead of each pooled connection preparing them in turn.
            options |= {
                "pool_size": pool_size,
                "max_overflow": 0,
                "pool_timeout": pool_timeout,
                "pool_recycle": 1800,
                "pool_use_lifo": True,
                "pool_pre_ping": pre_ping,
            }
        engine_url = self.url.difference_update_query([POOLER_PARAMETER])
        self.engine: AsyncEngine = create_async_engine(engine_url, **options)
        if self.dialect_name == "sqlite":
            _configure_sqlite(self.engine)
        # The same pool, in autocommit: for reads of a single statement (see `read`).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._pool_observed = False
        self.replica: Database | None = None
        """A read replica of this database, for reads that may lag (see `read`)."""
        self._gate: ReplicaGate | None = None
        if replica_url is not None:
            self.replica = Database(
                replica_url, pool_size=pool_size, pool_timeout=pool_timeout, pre_ping=True
            )
            if not (self.is_postgresql and self.replica.is_postgresql):
                raise ValueError("a read replica is for a PostgreSQL database")
            self._gate = ReplicaGate(
                replica_max_lag, self._log_position, self.replica._replay_state
            )
        self._read_from: Callable[[str], None] = lambda _: None

    @property
    def is_postgresql(self) -> bool:
        return self.dialect_name == "postgresql"

    def observe_statements(
        self,
        began: Callable[[str], object],
        ended: Callable[[object, BaseException | None], None],
    ) -> None:
        """Tell `began` of each SQL statement as it is sent (its text, never its parameters),
        and `ended` when it has its answer or failed, with what `began` returned: for the
        operators' traces. Runs in the caller's context (its current span)."""
        sync = self.engine.sync_engine
        key = "billing_statement"

        def before(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            conn.info.setdefault(key, []).append(began(statement))

        def after(conn: Any, *_: Any) -> None:
            started = conn.info.get(key)
            if started:
                ended(started.pop(), None)

        def failed(context: Any) -> None:
            started = context.connection.info.get(key) if context.connection else None
            if started:
                ended(started.pop(), context.original_exception)

        event.listen(sync, "before_cursor_execute", before)
        event.listen(sync, "after_cursor_execute", after)
        event.listen(sync, "handle_error", failed)

    def observe_pool(
        self, *, in_use: Callable[[int], None], connections: Callable[[int], None]
    ) -> None:
        """Tell `in_use` of each connection checked out of the pool (+1) and returned (-1),
        and `connections` of each opened (+1) and closed (-1): for the operators' metrics."""
        if self._pool_observed:  # one app after another on one database: told once
            return
        self._pool_observed = True
        pool = self.engine.sync_engine.pool
        event.listen(pool, "checkout", lambda *_: in_use(1))
        event.listen(pool, "checkin", lambda *_: in_use(-1))
        event.listen(pool, "connect", lambda *_: connections(1))
        event.listen(pool, "close", lambda *_: connections(-1))

    def observe_replica(
        self, *, lag: Callable[[float | None], None], read_from: Callable[[str], None]
    ) -> None:
        """Tell `lag` what each probe of the read replica found (seconds behind; None when it
        could not be told), and `read_from` where each read that may lag went (`replica` or
        `primary`): for the operators' metrics."""
        self._read_from = read_from
        if self._gate is not None:
            self._gate.lag_seen = lag

    @asynccontextmanager
    async def transaction(
        self, *, acting_user: str | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises.

        With `acting_user` on PostgreSQL, the transaction runs as the RLS-confined role with that
        user named, so it sees only the orgs the user is a member of. Without it, the transaction
        runs as the kernel's own (owner) role, which row-level security does not restrict.

        A momentary database failure (see `is_transient`) is raised as DatabaseUnavailable,
        which callers may retry; the transaction wrote nothing.
        """
        notified: set[str] = set()
        async with (
            _unavailable_if_transient(),
            _connection(self.engine) as conn,
            conn.begin(),
        ):
            conn.info[_NOTIFIED] = notified
            if acting_user is not None and self.is_postgresql:
                await conn.execute(text(f"SET LOCAL ROLE {USER_ROLE}"))
                await conn.execute(
                    text("SELECT set_config(:name, :value, true)"),
                    {"name": USER_SETTING, "value": acting_user},
                )
            yield conn
        for channel in notified:  # committed: this process's listeners hear it now
            for heard in tuple(self._listeners.get(channel, ())):
                heard()

    @asynccontextmanager
    async def read(
        self, *, acting_user: str | None = None, may_lag: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection for reads whose statements need not share one snapshot; it must not
        write. On PostgreSQL, for the kernel's own role, it runs in autocommit and so saves
        the BEGIN and COMMIT round trips (a third of a quota check's time); a user's reads
        need the transaction that confines them, and SQLite always gets one.

        With `may_lag`, the reads may be served by the read replica, when there is one that
        answers and is no more than `replica_max_lag` seconds behind (measured at most a
        probe interval ago); else, here."""
        gate, replica = self._gate, self.replica
        if may_lag and gate is not None and replica is not None and await gate.readable():
            stack = AsyncExitStack()
            try:
                conn = await stack.enter_async_context(replica.read(acting_user=acting_user))
            except DatabaseUnavailable:
                gate.failed()
            else:
                self._read_from("replica")
                async with stack:
                    yield conn
                return
        if may_lag and self.replica is not None:
            self._read_from("primary")
        async with self._read_here(acting_user) as conn:
            yield conn

    async def _log_position(self) -> int:
        """Where this (primary) database's write-ahead log stands, in bytes."""
        async with self._read_here(None) as conn:
            here = await conn.execute(text("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"))
            return int(here.scalar_one())

    async def _replay_state(self) -> tuple[bool, int | None]:
        """Whether this (replica) database is recovering, and how far it has replayed."""
        async with self.read() as conn:
            state = await conn.execute(
                text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn")
            )
            recovering, replayed = state.one()
        return bool(recovering), None if replayed is None else int(replayed)

    @asynccontextmanager
    async def _read_here(self, acting_user: str | None) -> AsyncIterator[AsyncConnection]:
        if acting_user is not None or not self.is_postgresql:
            async with self.transaction(acting_user=acting_user) as conn:
                yield conn
            return
        async with _unavailable_if_transient(), _connection(self._autocommit) as conn:
            yield conn

    @asynccontextmanager
    async def listen(self, channel: str, on_notify: Callable[[], None]) -> AsyncIterator[None]:
        """While the block runs, call `on_notify` whenever a transaction that notified
        `channel` (see `notify`) commits: at once for this process's transactions, and on
        PostgreSQL for every other process's too (LISTEN, on a connection of its own outside
        the pool, to `direct_url` when given; when that connection cannot be made, or the
        database is reached through a transaction pooler and no `direct_url` is given, the
        block runs without it, logged: callers poll as well)."""
        self._listeners.setdefault(channel, []).append(on_notify)
        try:
            async with self._listening(channel, on_notify):
                yield
        finally:
            self._listeners[channel].remove(on_notify)

    @asynccontextmanager
    async def _listening(self, channel: str, on_notify: Callable[[], None]) -> AsyncIterator[None]:
        if not self.is_postgresql:
            yield
            return
        target = self.direct_url or self.url
        if through_transaction_pooler(target):
            logger.warning(
                "not listening on %s: the database is reached through a transaction pooler; "
                "set BILLING_DATABASE_DIRECT_URL to PostgreSQL itself to be woken at once",
                channel,
            )
            yield
            return
        dsn = (
            target.difference_update_query([POOLER_PARAMETER])
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            conn = await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError) as exc:
            logger.warning("not listening on %s: %s", channel, exc)
            yield
            return

        def heard(*_: object) -> None:
            on_notify()

        try:
            await conn.add_listener(channel, heard)
            yield
        finally:
            await conn.close()

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.replica is not None:
            await self.replica.dispose()


EVENTS_CHANNEL = "billing_events"
"""Notified in the transaction that writes events: the delivery worker wakes on its commit."""


_NOTIFIED = "billing_notified"


async def notify(conn: AsyncConnection, channel: str) -> None:
    """Notify `channel` when the transaction on `conn` commits (see `Database.listen`);
    nothing is heard if it rolls back."""
    notified = conn.info.get(_NOTIFIED)
    if notified is not None:
        notified.add(channel)
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


@asynccontextmanager
async def _connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection from the pool. Failing to get one is DatabaseUnavailable whatever the
    reason (refused, too many clients, a database that does not accept connections now
    (55000), starting up, a wrong password, no free pooled connection): nothing was done,
    and `/readyz` answers 503 for the same state, so callers wait and retry."""
    try:
        conn = await engine.connect()
    except (DBAPIError, OSError, PoolTimeout) as exc:
        raise _unavailable("cannot connect to the database", exc) from exc
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def _unavailable_if_transient() -> AsyncIterator[None]:
    """Raise a momentary database failure as DatabaseUnavailable; let others through."""
    try:
        yield
    except (DBAPIError, OSError, PoolTimeout) as exc:
        if not is_transient(exc):
            raise
        raise _unavailable("database unavailable", exc) from exc


def _unavailable(what: str, exc: BaseException) -> DatabaseUnavailable:
    # The reason names hosts and roles: it goes to the log, not to the caller.
    logger.warning("%s: %s", what, getattr(exc, "orig", None) or exc)
    return DatabaseUnavailable("the database is momentarily unavailable; retry shortly")


def upsert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on the connection's dialect."""
    return upsert_for(conn.dialect.name, table)


def upsert_for(dialect_name: str, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on the named dialect (for statements built once)."""
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def in_code_point_order(text_value: ColumnElement[Any], dialect_name: str) -> ColumnElement[Any]:
    """`text_value` compared and sorted by code point, as Python compares strings (an
    idempotency key that breaks a tie of event times): SQLite's default; on PostgreSQL, the
    "C" collation, whatever the database's own."""
    return text_value.collate("C") if dialect_name == "postgresql" else text_value
