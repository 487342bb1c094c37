"""Running the Alembic migrations from code (the CLI and the tests use this). Alembic is
imported only to migrate: every command reads the schema's head, which the migrations'
files say without it (a command starts in a third less time)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from billing_kernel.db.database import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*(?:\"([^\"]+)\"|None)\s*$", re.M)


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


class MigrationFailed(Exception):
    """The database could not be migrated; the message is one line for a person."""


def _reason(exc: BaseException) -> str:
    """The first line of what the driver said about a database failure."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database's schema up to `revision` (blocking; call outside an event loop).
    Raises MigrationFailed when the database cannot be reached or written."""
    from alembic import command

    try:
        command.upgrade(alembic_config(database_url), revision)
    except (SQLAlchemyError, OSError) as exc:
        raise MigrationFailed(
            f"cannot migrate {display_url(database_url)}: {_reason(exc)}"
        ) from exc


def downgrade(database_url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


RUNS_ALSO_ON: frozenset[str] = frozenset()
"""Revisions before the head that this version also runs on: the first step of a migration
taken in two so that kernels keep writing while it runs. None today: the version before this
one ran on 0046 and 0047 (docs/operations.md, "Usage events by month"); this one writes the
outbox as 0048 keys it, and reads the price models 0049 adds, the features 0050 adds, the
coupons 0051 adds and the prices per dimension 0052 adds."""


def runs_on(current: str | None, head: str | None) -> bool:
    """Whether this version serves a database at schema revision `current`."""
    return current is not None and (current == head or current in RUNS_ALSO_ON)


def head_revision(database_url: str) -> str | None:
    """The revision the migrations end at (every database URL is migrated by the same
    files): the one no other names as the revision it follows. Read from the files' own
    `revision` and `down_revision` lines; a history with more than one end is refused, as
    Alembic's `get_current_head` refuses it."""
    return _head()


@cache
def _head() -> str | None:
    found = revisions()
    return found[-1] if found else None


@cache
def revisions() -> tuple[str, ...]:
    """Every schema revision, oldest first, as the migrations' files chain them."""
    after: dict[str | None, list[str]] = {}
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict(_REVISION.findall(path.read_text()))
        if "revision" in found:
            after.setdefault(found.get("down_revision") or None, []).append(found["revision"])
    chain: list[str] = []
    following: str | None = None
    while following in after:
        nexts = after.pop(following)
        if len(nexts) > 1:
            raise RuntimeError(f"the migrations have more than one head: {sorted(nexts)}")
        chain.append(nexts[0])
        following = nexts[0]
    if after:
        raise RuntimeError(f"the migrations do not make one chain after {following}")
    return tuple(chain)


def sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite database URL, made absolute (None for PostgreSQL or memory)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database).resolve()


def display_url(database_url: str) -> str:
    """The URL to show a person: no password, and a SQLite file's absolute path."""
    path = sqlite_file(database_url)
    if path is not None:
        return f"sqlite:///{path}"
    return make_url(database_url).render_as_string(hide_password=True)


async def current_revision(database: Database) -> str | None:
    """The schema revision the database is at; None for a database with no schema yet.
    Raises (SQLAlchemyError, OSError) when it cannot be reached."""
    async with database.engine.connect() as conn:
        has_table = await conn.run_sync(lambda c: inspect(c).has_table("alembic_version"))
        if not has_table:
            return None
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against this version of the kernel."""

    url: str
    """The database, as `display_url` shows it."""
    current: str | None
    head: str | None
    unreachable: str | None = None
    """Why the database could not be read, if it could not."""

    @property
    def problem(self) -> str | None:
        """One line for a person: what is wrong and what to run; None when it is current."""
        if self.unreachable is not None:
            return f"cannot use the database {self.url}: {self.unreachable}"
        if self.current is None:
            return (
                f"the database {self.url} has no billing-kernel schema: run "
                "`billing-kernel migrate` (or set BILLING_DATABASE_URL to the right database)"
            )
        if not runs_on(self.current, self.head):
            return (
                f"the database {self.url} is at schema revision {self.current}, this version "
                f"needs {self.head}: run `billing-kernel migrate`"
            )
        return None


async def schema_state(database: Database, database_url: str) -> SchemaState:
    """Read the database's revision; never raises for a database that cannot be reached."""
    url, head = display_url(database_url), head_revision(database_url)
    path = sqlite_file(database_url)
    if path is not None and not path.exists():  # do not let the driver create an empty file
        return SchemaState(url, None, head)
    try:
        return SchemaState(url, await current_revision(database), head)
    except (SQLAlchemyError, OSError) as exc:
        return SchemaState(url, None, head, unreachable=_reason(exc))


async def schema_is_current(database: Database, head: str | None) -> bool:
    """Whether the database answers and its schema is one this version runs on: `head`, or
    one of RUNS_ALSO_ON (the readiness check)."""
    try:
        return runs_on(await current_revision(database), head)
    except (SQLAlchemyError, OSError):
        return False
