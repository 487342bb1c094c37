"""Debian's nginx as the load balancer in front of several kernels, on 127.0.0.1 and a port
of its own, with an access log that says which kernel answered each request; stopped by
the test."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.live import free_port, stop_process, wait_for_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@dataclass(frozen=True)
class Logged:
    """One request as nginx logged it."""

    at: float
    """When it was answered (seconds since the epoch)."""
    status: int
    upstreams: tuple[str, ...]
    """The kernels tried, in order (`127.0.0.1:port`); the last one answered."""
    method: str
    path: str


@dataclass(frozen=True)
class Nginx:
    url: str
    access_log: Path

    def logged(self) -> list[Logged]:
        """Every request logged so far."""
        found = []
        for line in self.access_log.read_text().splitlines():
            at, status, upstreams, method, path = line.split("|")
            tried = tuple(u.strip() for u in upstreams.replace(" : ", ", ").split(","))
            found.append(Logged(float(at), int(status), tried, method, path))
        return found


def config(port: int, upstreams: list[int], directory: Path) -> str:
    """Round robin over the kernels; a kernel that refuses a connection is left out for a
    second, and the request goes to the next (it was never sent); a request already sent to
    a kernel that then died is answered 502, never sent again (POSTs are not idempotent to
    nginx: the client, which knows its idempotency key, retries)."""
    servers = "".join(
        f"        server 127.0.0.1:{upstream} max_fails=1 fail_timeout=1s;\n"
        for upstream in upstreams
    )
    temp = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    log_format kernels '$msec|$status|$upstream_addr|$request_method|$uri';\n"
        f"    access_log {directory / 'access.log'} kernels;\n"
        f"{temp}"
        "    client_max_body_size 8m;\n"
        "    upstream kernels {\n"
        f"{servers}"
        "        keepalive 32;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        "        location / {\n"
        "            proxy_pass http://kernels;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header Host $host;\n"
        "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        "            proxy_next_upstream error timeout;\n"
        "            proxy_connect_timeout 2s;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


@contextmanager
def nginx(upstreams: list[int]) -> Iterator[Nginx]:
    """nginx balancing over the kernels listening on `upstreams` (ports on 127.0.0.1)."""
    with tempfile.TemporaryDirectory(prefix="nginx-") as name:
        directory = Path(name)
        port = free_port()
        conf = directory / "nginx.conf"
        conf.write_text(config(port, upstreams, directory))
        log = directory / "nginx.out"
        command = [NGINX, "-c", str(conf), "-p", str(directory), "-e", str(directory / "error.log")]
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process, "nginx", log)
            yield Nginx(f"http://127.0.0.1:{port}", directory / "access.log")
        finally:
            stop_process(process)
