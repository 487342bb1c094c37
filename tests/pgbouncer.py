"""Debian's PgBouncer in transaction pooling mode in front of the test PostgreSQL server, on
127.0.0.1 and a port of its own, with few server connections so that every client's
transactions move between them; stopped by the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.live import free_port, stop_process, wait_for_port

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class PgBouncer:
    port: int
    log: Path

    def url_for(self, database_url: str) -> str:
        """`database_url` (a database on the test server) reached through this PgBouncer."""
        url = make_url(database_url).set(host="127.0.0.1", port=self.port)
        url = url.update_query_dict({"pgbouncer": "true"})
        return url.render_as_string(hide_password=False)


@contextmanager
def pgbouncer(server_url: str, *, server_connections: int = 4) -> Iterator[PgBouncer]:
    """PgBouncer (pool_mode = transaction) in front of the server at `server_url`, every
    database on it reachable by name, at most `server_connections` server connections per
    database and user."""
    server = make_url(server_url)
    user = server.username or "postgres"
    # PgBouncer refuses to run as root: as root it is told to become the server's owner,
    # which must then read its files.
    with tempfile.TemporaryDirectory(prefix="pgbouncer-") as name:
        directory = Path(name)
        directory.chmod(0o755)
        port = free_port()
        (directory / "users.txt").write_text(f'"{user}" ""\n')
        config = directory / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {directory / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {server_connections}\nmax_client_conn = 1000\n"
            # asyncpg names itself to the server: PgBouncer passes on only what it knows.
            "ignore_startup_parameters = extra_float_digits\n"
        )
        for path in directory.iterdir():
            path.chmod(0o644)
        command = [PGBOUNCER, str(config)]
        if os.geteuid() == 0:
            command[1:1] = ["-u", "postgres"]
        log = directory / "pgbouncer.log"
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process, "pgbouncer", log)
            yield PgBouncer(port, log)
        finally:
            stop_process(process)
