"""The incumbents' own JavaScript clients (lago-javascript-client, @openmeter/sdk, stripe and
@polar-sh/sdk, pinned in tests/compat/js/package-lock.json) against a real kernel server, on
SQLite and on PostgreSQL, with Node's own test runner; as test_lago.py and its siblings do
with their Python clients."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.compat.conftest import Live

pytestmark = pytest.mark.long

CLIENTS = Path(__file__).resolve().parent / "js"


@pytest.mark.parametrize("client", ["lago", "openmeter", "stripe", "polar"])
def test_the_incumbents_javascript_client(live: Live, client: str) -> None:
    assert (CLIENTS / "node_modules").exists(), "the clients are missing: run `make pytest`"
    done = subprocess.run(
        ["node", "--test", "--test-reporter=tap", CLIENTS / f"{client}.test.mjs"],
        env={**os.environ, "BILLING_KERNEL_URL": live.url, "BILLING_KERNEL_KEY": live.key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "\n# fail 0\n" in done.stdout, done.stdout[-2000:]
