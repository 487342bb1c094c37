"""Running the API under uvicorn: one process, or several that each accept on their own socket.

uvicorn's own workers share one listening socket, and whichever worker is awake first accepts
every connection waiting: clients that keep their connections open (every SDK, every proxy
with an upstream pool) can all land on one worker while the others idle. Measured with 16
keep-alive clients and two workers: all 16 on one worker, half the machine unused. Here each
worker binds its own socket with SO_REUSEPORT, and the operating system spreads new
connections over the workers' sockets.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import signal
import socket
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

import uvicorn

APP = "billing_kernel.api.app:create_app"
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
RESTART_PAUSE_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 15.0


def uvicorn_options(host: str, port: int, log_level: str) -> dict[str, Any]:
    return {
        "app": APP,
        "factory": True,
        "host": host,
        "port": port,
        "log_level": log_level,
        "proxy_headers": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
    }


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> None:
    """Raise OSError if something already listens on `host:port`. A plain bind, as uvicorn
    makes: with SO_REUSEPORT alone, a second server on the port would silently join this one."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` that other processes of this user may bind too."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, which freezes the garbage collector's view of the process once the app
    has started: what is alive then (modules, the app, compiled statements) lives as long as
    the process, and the collector's full passes would otherwise walk it on the request path
    (1,000-event batch p99 97 -> 43 ms). It also lets the youngest generation grow to
    YOUNG_OBJECTS before a pass: a 1,000-event batch holds some 12,000 objects until it is
    answered, and at Python's default of 700 the collector made about 11 passes over them a
    batch, each finding them all alive (1.8 ms of a 41 ms batch, now none). Done here, not
    in the app, because the app may be mounted in someone else's process."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        gc.freeze()
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_OBJECTS, older, oldest)


YOUNG_OBJECTS = 20_000
"""Objects allocated (less those freed) between two passes of the garbage collector over
the youngest generation, in a server process."""


def _worker(options: dict[str, Any], supervisor: int) -> None:
    """One worker process: its own socket, its own event loop, the whole app."""
    # Its own process group: a terminal's Ctrl-C reaches the supervisor alone, which then
    # stops each worker once (a second signal would make uvicorn drop requests in flight).
    os.setpgrp()
    _stop_when_orphaned(supervisor)
    sock = listening_socket(options["host"], options["port"])
    _Server(uvicorn.Config(**options)).run(sockets=[sock])


def _parent_of(pid: int) -> int | None:
    """The parent of process `pid` (Linux's /proc), None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _stop_when_orphaned(supervisor: int) -> None:
    """Shut down gracefully if the supervisor dies without stopping us (SIGKILL, OOM). A
    worker's parent is the fork server, which outlives the supervisor while any worker
    holds its pipe: the supervisor is gone when the fork server's parent is no longer the
    supervisor (a process that dies hands its children to another at once, before it is
    reaped), or, without /proc, when no process has its pid."""
    forkserver = os.getppid()

    def supervisor_alive() -> bool:
        parent = _parent_of(forkserver)
        if parent is not None:
            return parent == supervisor
        try:
            os.kill(supervisor, 0)
        except ProcessLookupError:
            return False
        return True

    def watch() -> None:
        while os.getppid() == forkserver and supervisor_alive():
            time.sleep(1)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve until SIGINT or SIGTERM; a worker that dies is replaced. OSError if the port is
    taken."""
    check_port_free(host, port)
    options = uvicorn_options(host, port, log_level)
    if workers == 1:
        _Server(uvicorn.Config(**options)).run()
        return
    if not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(**options, workers=workers)
        return
    # Held, never listened on: the port is checked free before any worker starts, and stays
    # this user's while workers come and go.
    with listening_socket(host, port), _metrics_directory():
        _supervise(options, workers)


@contextlib.contextmanager
def _metrics_directory() -> Iterator[None]:
    """Where the workers keep their metrics, so that `/metrics` sums every worker's: the
    operator's PROMETHEUS_MULTIPROC_DIR (shared with a `billing-kernel worker` on the same
    machine), else a directory of this server's own, removed when it stops. Named before the
    workers' fork server starts, which reads it as it imports the app."""
    if os.environ.get(MULTIPROC_DIR):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="billing-kernel-metrics-") as directory:
        os.environ[MULTIPROC_DIR] = directory
        try:
            yield
        finally:
            del os.environ[MULTIPROC_DIR]


def _forget(process: BaseProcess) -> None:
    """A worker that ended: its live gauges (connections in use) no longer count."""
    directory = os.environ.get(MULTIPROC_DIR)
    if directory and process.pid is not None:
        from prometheus_client import multiprocess  # the supervisor reports nothing itself

        multiprocess.mark_process_dead(process.pid, directory)  # type: ignore[no-untyped-call]


def _supervise(options: dict[str, Any], workers: int) -> None:
    # Workers are forked from a server process that imported the app once, so a worker
    # starts (and one that died is replaced) in a fraction of an import's time, its modules
    # shared with the others; never from this process, which has run an event loop.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([APP.partition(":")[0]])
    stopping = False

    def stop(_signum: int, _frame: types.FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

    def start() -> BaseProcess:
        process = context.Process(
            target=_worker, args=(options, os.getpid()), name="billing-kernel-worker"
        )
        process.start()
        return process

    running = [start() for _ in range(workers)]
    try:
        while not stopping:
            wait([p.sentinel for p in running], timeout=0.5)
            for index, process in enumerate(running):
                if not process.is_alive() and not stopping:
                    process.join()
                    _forget(process)
                    time.sleep(RESTART_PAUSE_SECONDS)  # a worker failing at once must not spin
                    running[index] = start()
    finally:
        for process in running:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for process in running:
            process.join(STOP_TIMEOUT_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
