"""Property tests of the running server against its own OpenAPI description: no 5xx, and
every response matches what the description promises. A real `billing-kernel serve` process
on PostgreSQL; bounded so that it finishes in well under a minute."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_kernel.db import migrate
from tests.api.conftest import user_token
from tests.conftest import scratch_postgres_database
from tests.live import KernelServer, kernel_command


@pytest.fixture(scope="module")
def fuzz_url() -> Iterator[str]:
    """A database of the fuzzing's own: what it registers (webhook endpoints to made-up
    hosts, among others) stays out of the other tests' way."""
    with scratch_postgres_database() as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="module")
def live_kernel(fuzz_url: str) -> Iterator[str]:
    """`billing-kernel serve` in its own process, on a free port."""
    server = KernelServer(fuzz_url).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def credentials(live_kernel: str, fuzz_url: str) -> dict[str, str]:
    """A key with every scope for one org, and a user who owns that org: requests that
    name no org are about it."""
    key = kernel_command(
        fuzz_url,
        "api-keys",
        "create",
        "--org",
        "fuzz-org",
        "--scopes",
        "usage:write,quota:check,billing:admin",
    )
    kernel_command(
        fuzz_url, "token", "--user", "fuzz-owner", "--org", "fuzz-org", "--role", "owner"
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
