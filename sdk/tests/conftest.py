"""The SDK's tests run on their own: no kernel, no database, only the SDK and its test tools."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
