"""What the client tests against a real kernel server share: the server, and a product's
API key for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live import KernelServer, kernel_command


@pytest.fixture(scope="module")
def api_key(postgres_url: str) -> str:
    """A product's key: usage:write records and consumes, quota:check answers checks."""
    return kernel_command(postgres_url, "api-keys", "create", "--scopes", "usage:write,quota:check")


@pytest.fixture
def server(postgres_url: str) -> Iterator[KernelServer]:
    """A kernel on PostgreSQL, not started: a test starts it when the kernel should be up."""
    kernel = KernelServer(postgres_url)
    yield kernel
    kernel.stop()
