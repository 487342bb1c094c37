"""The TypeScript SDK (`sdk-js/`) with Node's own test runner against a real kernel server, on
SQLite and on PostgreSQL; and its types, generated from the kernel's OpenAPI document by
openapi-typescript, against the document the kernel serves now."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from billing_kernel.api.app import openapi_document
from tests.conftest import BACKENDS
from tests.live import KernelServer, kernel_command

pytestmark = pytest.mark.long

SDK_JS = Path(__file__).resolve().parents[2] / "sdk-js"
BIN = SDK_JS / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def built() -> Path:
    """The SDK and its tests compiled (`tsc`, which also checks their types)."""
    assert (BIN / "tsc").exists(), "the SDK's npm packages are missing: run `make sdk-js`"
    subprocess.run([BIN / "tsc", "-p", SDK_JS], check=True, capture_output=True, text=True)
    return SDK_JS / "dist"


@pytest.fixture(scope="module", params=BACKENDS)
def kernel(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    key = kernel_command(
        database_url, "api-keys", "create", "--scopes", "usage:write,quota:check,billing:admin"
    )
    server = KernelServer(database_url).start()
    yield server.url, key
    server.stop()


def test_the_sdk_against_a_live_kernel(built: Path, kernel: tuple[str, str]) -> None:
    url, key = kernel
    tests = sorted(str(path) for path in (built / "test" / "live").glob("*.test.js"))
    done = subprocess.run(
        ["node", "--test", "--test-reporter=tap", *tests],
        env={**os.environ, "BILLING_KERNEL_URL": url, "BILLING_KERNEL_KEY": key},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "# pass 6\n# fail 0\n" in done.stdout, done.stdout[-2000:]


def test_the_sdks_types_are_generated_from_the_openapi_document_served_now(
    built: Path, tmp_path: Path
) -> None:
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(openapi_document()))
    generated = tmp_path / "openapi.ts"
    subprocess.run(
        [BIN / "openapi-typescript", document, "-o", generated],
        check=True,
        capture_output=True,
    )
    assert generated.read_text() == (SDK_JS / "src" / "openapi.ts").read_text(), (
        "the kernel's API changed: regenerate the SDK's types with `make sdk-js-types`"
    )
