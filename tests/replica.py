"""A PostgreSQL primary and a hot standby streaming from it, both of the test's own: two
clusters made with the server's `initdb` and `pg_basebackup` in a scratch directory, on
127.0.0.1 and ports of their own; stopped and removed by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.live import free_port


def server_programs() -> Path:
    """The newest installed PostgreSQL server's programs (Debian's layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise FileNotFoundError("no PostgreSQL server programs (initdb) are installed")
    return Path(initdb).parent


@dataclass(frozen=True)
class Pair:
    primary: str
    """The primary server's URL (no database)."""
    replica: str
    """The standby's URL (no database)."""
    replica_data: Path
    programs: Path
    directory: Path

    def stop_replica(self) -> None:
        _as_owner(str(self.programs / "pg_ctl"), "-D", str(self.replica_data), "-m", "fast", "stop")

    def start_replica(self) -> None:
        _as_owner(
            str(self.programs / "pg_ctl"),
            "-D",
            str(self.replica_data),
            "-l",
            str(self.directory / "replica.log"),
            "-w",
            "start",
        )

    async def on_replica(self, sql: str) -> object:
        """`sql`'s single value, run on the standby (as its superuser)."""
        conn = await asyncpg.connect(f"{self.replica}/postgres")
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()


def _as_owner(*command: str, check: bool = True) -> None:
    """Run a server program as the clusters' owner (`postgres` when run as root, which the
    server refuses to be)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
    if check and done.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")


@contextmanager
def streaming_pair() -> Iterator[Pair]:
    """A primary and a hot standby streaming from it (asynchronous, as a read replica is)."""
    programs = server_programs()
    with tempfile.TemporaryDirectory(prefix="pg-pair-") as name:
        directory = Path(name)
        directory.chmod(0o777)
        primary, replica = directory / "primary", directory / "replica"
        primary_port, replica_port = free_port(), free_port()
        _as_owner(
            str(programs / "initdb"), "-D", str(primary), "-A", "trust", "-U", "postgres",
            "--no-sync",
        )  # fmt: skip
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(
                f"port = {primary_port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{directory}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 32MB\nmax_connections = 60\n"
            )
        ctl = str(programs / "pg_ctl")
        _as_owner(ctl, "-D", str(primary), "-l", str(directory / "primary.log"), "-w", "start")
        try:
            _as_owner(
                str(programs / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary_port),
                "-U", "postgres", "-D", str(replica), "-R", "-X", "stream", "--no-sync",
            )  # fmt: skip
            with (replica / "postgresql.auto.conf").open("a") as conf:
                conf.write(f"port = {replica_port}\n")
            pair = Pair(
                f"postgresql://postgres@127.0.0.1:{primary_port}",
                f"postgresql://postgres@127.0.0.1:{replica_port}",
                replica,
                programs,
                directory,
            )
            pair.start_replica()
            try:
                yield pair
            finally:
                _as_owner(ctl, "-D", str(replica), "-m", "immediate", "stop", check=False)
        finally:
            _as_owner(ctl, "-D", str(primary), "-m", "immediate", "stop", check=False)
