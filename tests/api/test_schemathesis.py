"""Property tests of the running server against its own OpenAPI description: no 5xx, and
every response matches what the description promises. A real `billing-kernel serve` process
on PostgreSQL; bounded so that it finishes in well under a minute."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import SECRET, user_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kernel_command(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "billing_kernel", *args],
        env={**os.environ, "BILLING_DATABASE_URL": url, "BILLING_JWT_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def live_kernel(postgres_url: str) -> Iterator[str]:
    """`billing-kernel serve` in its own process, on a free port."""
    port = free_port()
    env = {**os.environ, "BILLING_DATABASE_URL": postgres_url, "BILLING_JWT_SECRET": SECRET}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "billing_kernel",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                f"the server did not start: {process.stderr.read() if process.stderr else ''}"
            )
        time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def credentials(live_kernel: str, postgres_url: str) -> dict[str, str]:
    """A key with every scope for one org, and a user who owns that org: requests that
    name no org are about it."""
    key = kernel_command(
        "api-keys",
        "create",
        "--org",
        "fuzz-org",
        "--scopes",
        "usage:write,quota:check,billing:admin",
        url=postgres_url,
    ).stdout.strip()
    kernel_command(
        "token", "--user", "fuzz-owner", "--org", "fuzz-org", "--role", "owner", url=postgres_url
    )
    return {"key": key, "user": user_token("fuzz-owner")}


def schemathesis_run(base: str, authorization: str, examples: int, *headers: str) -> None:
    """`schemathesis run` with every check; fails the test with its report on any failure."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(examples),
            "--seed",
            "20261124",
            "--header",
            f"Authorization: Bearer {authorization}",
            "--request-timeout",
            "10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_as_a_service(live_kernel: str, credentials: dict[str, str]) -> None:
    schemathesis_run(live_kernel, credentials["key"], 30)


def test_as_a_user(live_kernel: str, credentials: dict[str, str]) -> None:
    schemathesis_run(live_kernel, credentials["user"], 15)
