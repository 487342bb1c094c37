"""A real `billing-kernel serve` process for tests that talk to the kernel over the network."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.commands import run_command

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, and SIGKILL if it has not exited 10 s later."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port: int, process: subprocess.Popen[Any], name: str, output: Path) -> None:
    """Wait until `process` accepts connections on `port` (30 s at most); RuntimeError with
    the end of its `output` if it exits first."""
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            said = output.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{name} exited: {said}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on {port}") from None
            time.sleep(0.05)


def kernel_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "BILLING_DATABASE_URL": database_url, "BILLING_JWT_SECRET": SECRET}


def start_worker(database_url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`billing-kernel worker *args` in a process of its own (its log to a pipe), polling every
    0.1 s, each delivery given 1 s, and closing no period unless `env` says otherwise (a
    shared test database's orgs are other tests': their periods stay open)."""
    settings = {
        "BILLING_DELIVERY_TIMEOUT_SECONDS": "1",
        "BILLING_WORKER_POLL_SECONDS": "0.1",
        "BILLING_CLOSE_PERIODS": "false",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "billing_kernel", "worker", "--log-level", "warning", *args],
        env={**kernel_env(database_url), **settings},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def kernel_command(database_url: str, *args: str) -> str:
    """Run a `billing-kernel` command; its standard output."""
    done = run_command(*args, env=kernel_env(database_url))
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout.strip()


def _tcp_sockets(port: int, state: str) -> set[str]:
    """The inodes (as `socket:[n]`) of local TCP sockets on `port` in `state` (Linux /proc;
    01 established, 0A listening)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    found.add(f"socket:[{fields[9]}]")
    return found


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:  # it exited in between
        return []


def worker_pids(server_pid: int) -> list[int]:
    """The processes of a `serve` command that answer requests: its workers (the children of
    the fork server it starts them from), or itself."""
    workers = []
    for pid in _children(server_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # it exited in between
            continue
        if b"forkserver" in command:
            workers += _children(pid)
    return workers or [server_pid]


def connections_per_worker(server_pid: int, port: int) -> list[int]:
    """How many established client connections each worker holds, most first."""
    established = _tcp_sockets(port, "01")
    counts = []
    for pid in worker_pids(server_pid):
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                held += fd.readlink().name in established
            except OSError:  # closed meanwhile
                continue
        counts.append(held)
    return sorted(counts, reverse=True)


class KernelServer:
    """`billing-kernel serve` on a fixed port, which can be killed and started again."""

    def __init__(
        self,
        database_url: str,
        port: int | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.database_url = database_url
        self.log = log
        """Where its standard error goes (its log), when given."""
        self.workers = workers
        self.env = env or {}
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self, *, wait: bool = True) -> KernelServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "billing_kernel",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.workers),
                "--log-level",
                "warning",
            ],
            env={**kernel_env(self.database_url), **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE if self.log is None else self.log.open("a"),
            text=True,
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the kernel answers /readyz and every worker listens."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
                if ready and len(_tcp_sockets(self.port, "0A")) >= self.workers:
                    return
            except httpx.TransportError:
                pass
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the kernel did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, requests in flight are cut."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
