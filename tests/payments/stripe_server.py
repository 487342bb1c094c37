"""localstripe, the Stripe-compatible server the payments tests talk to, run on 127.0.0.1 in
a process of its own with its state in memory (its own launcher binds every interface and
keeps its state in a fixed file in /tmp). Started and stopped by the test that uses it; see
docs/payments.md for where it differs from Stripe."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

LAUNCHER = """
import socket, sys
from aiohttp import web
import localstripe.resources as resources
from localstripe.server import app

resources.Store.dump_to_disk = lambda self: None  # in memory: nothing written to /tmp
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(128)  # connections wait in the backlog until the app accepts them
print(sock.getsockname()[1], flush=True)
web.run_app(app, sock=sock, print=None, access_log=None, handle_signals=True)
"""

TEST_KEY = "sk_test_billing_kernel"
"""localstripe takes any key that looks like a secret key."""


@dataclass
class StripeServer:
    base: str
    """What `BILLING_STRIPE_API_BASE` points at."""

    def reset(self) -> None:
        """Forget every object (customers, payment methods, intents)."""
        httpx.delete(f"{self.base}/_config/data").raise_for_status()

    def listen(self, url: str, secret: str) -> None:
        """Send every event to `url`, signed with `secret` (its own webhook configuration:
        it has no `/v1/webhook_endpoints`)."""
        httpx.post(
            f"{self.base}/_config/webhooks/kernel", data={"url": url, "secret": secret}
        ).raise_for_status()


@contextmanager
def stripe_server() -> Iterator[StripeServer]:
    """localstripe on a free port of 127.0.0.1, stopped on leaving."""
    # Its log goes to a file, not a pipe: a pipe nobody reads would block it once full.
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER], stdout=subprocess.PIPE, stderr=log, text=True
        )
        try:
            assert process.stdout is not None
            port = process.stdout.readline().strip()  # printed once bound and listening
            if not port.isdigit():
                process.wait(timeout=10)
                log.seek(0)
                raise RuntimeError(f"localstripe did not start: {log.read()[-2000:]}")
            yield StripeServer(f"http://127.0.0.1:{port}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()  # type: ignore[union-attr]
