"""What every `billing-kernel` command shares: the configured database, work run against
it once it is there and migrated, and failing with one line."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import NoReturn, TypeVar

import typer
from pydantic import ValidationError

from billing_kernel.config import Settings, get_settings
from billing_kernel.db import migrate as migrations
from billing_kernel.db.database import Database, async_url, through_transaction_pooler
from billing_kernel.errors import BillingError
from billing_kernel.kernel import Kernel

T = TypeVar("T")


class _Options:
    verbose = False
    """Say which database each command uses (`billing-kernel -v`)."""


options = _Options()


def echo_each(lines: Iterable[str], *, none: str = "none") -> None:
    """Each line of a listing, or `none` when there is none: an empty list says so."""
    empty = True
    for line in lines:
        typer.echo(line)
        empty = False
    if empty:
        typer.echo(none)


def fail(message: str) -> NoReturn:
    """One line on stderr and exit code 1: how every expected failure ends."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code=1)


def settings() -> Settings:
    """The BILLING_* settings; one line per setting that is wrong, and exit code 1."""
    try:
        found = get_settings()
    except ValidationError as exc:
        fail(
            "; ".join(
                f"BILLING_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors()
            )
        )
    urls = {
        "BILLING_DATABASE_URL": found.database_url,
        "BILLING_DATABASE_DIRECT_URL": found.database_direct_url,
        "BILLING_DATABASE_REPLICA_URL": found.database_replica_url,
    }
    for name, url in urls.items():
        if url is None:
            continue
        try:
            through_transaction_pooler(async_url(url))
        except ValueError as exc:
            fail(f"{name}: {exc}")
    if found.database_replica_url is not None and not (
        async_url(found.database_url).get_backend_name()
        == async_url(found.database_replica_url).get_backend_name()
        == "postgresql"
    ):
        fail("BILLING_DATABASE_REPLICA_URL: a read replica is for a PostgreSQL database")
    return found


def database_url() -> str:
    url = settings().database_url
    if options.verbose:
        typer.secho(f"database: {migrations.display_url(url)}", err=True)
    return url


class _SchemaNotReady(Exception):
    pass


async def schema(url: str) -> migrations.SchemaState:
    database = Database(url)
    try:
        return await migrations.schema_state(database, url)
    finally:
        await database.dispose()


def with_kernel(work: Callable[[Kernel], Awaitable[T]]) -> T:
    """Run `work` against the configured database, once it is there and migrated; a
    BillingError, or a database that is missing, unmigrated or unreachable, is one line on
    stderr and exit code 1."""
    configured = settings()
    url = database_url()

    async def main() -> T:
        state = await schema(url)
        if state.problem is not None:
            raise _SchemaNotReady(state.problem)
        kernel = Kernel.open(configured)
        try:
            await kernel.sandbox.refresh()  # dev mode: the time the sandbox clock stands at
            return await work(kernel)
        finally:
            await kernel.aclose()

    try:
        return asyncio.run(main())
    except _SchemaNotReady as exc:
        fail(str(exc))
    except BillingError as exc:
        fail(exc.message)
