"""Property tests of the running server against its own OpenAPI description, every
operation and every phase (examples, coverage, fuzzing, and the stateful phase that follows
the description's links): no 5xx, no schema-valid request refused, no schema-violating one
taken, and every response as the description promises. A real `billing-kernel serve`
process on SQLite and on PostgreSQL, as a one-org service, a service for every org and a
user; bounded in `make test`, longer in `make fuzz` (BILLING_FUZZ_EXAMPLES)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, own_database_url
from tests.live import KernelServer, kernel_command
from tests.web import user_token

pytestmark = pytest.mark.long

EXAMPLES = int(os.environ.get("BILLING_FUZZ_EXAMPLES", "0"))
"""Examples per operation for every run (`make fuzz`); 0: the bounded counts below, which
`make test` runs: every operation, phase and check on both databases as each caller, with
the fuzzing phase's depth left to `make fuzz` (300 an operation)."""


@pytest.fixture(scope="module", params=BACKENDS)
def fuzz_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of the fuzzing's own, on each backend: what it registers (plans, metrics,
    webhook endpoints to made-up hosts, among others) stays out of the other tests' way."""
    with own_database_url(request.param, tmp_path_factory.mktemp("fuzz")) as url:
        yield url


@pytest.fixture(scope="module")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's log: a failing run shows what the server said of it."""
    return tmp_path_factory.mktemp("fuzz-log") / "serve.log"


@pytest.fixture(scope="module")
def live_kernel(fuzz_url: str, server_log: Path) -> Iterator[str]:
    """`billing-kernel serve` in its own process, on a free port."""
    server = KernelServer(fuzz_url, log=server_log).start()
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def credentials(live_kernel: str, fuzz_url: str) -> dict[str, str]:
    """A key with every scope for one org, one for every org, and a user who owns that org:
    requests that name no org are about it."""
    every_org = kernel_command(
        fuzz_url, "api-keys", "create", "--scopes", "usage:write,quota:check,billing:admin"
    )
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
    return {"key": key, "every_org": every_org, "user": user_token("fuzz-owner")}


def schemathesis_run(
    base: str,
    authorization: str,
    examples: int,
    *headers: str,
    log: Path | None = None,
    excluded: tuple[str, ...] = (),
) -> None:
    """`schemathesis run` with every check; fails the test with its report on any failure."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "all",
            *(argument for check in excluded for argument in ("--exclude-checks", check)),
            "--max-examples",
            str(EXAMPLES or examples),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--seed",
            "20261124",
            "--header",
            f"Authorization: Bearer {authorization}",
            *(argument for header in headers for argument in ("--header", header)),
            "--request-timeout",
            "10",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=None if EXAMPLES else 300,
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    said = "" if log is None or not log.exists() else log.read_text()[-6000:]
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:] + said


def test_as_a_service(live_kernel: str, credentials: dict[str, str], server_log: Path) -> None:
    schemathesis_run(live_kernel, credentials["key"], 15, log=server_log)


def test_as_a_service_for_every_org(
    live_kernel: str, credentials: dict[str, str], server_log: Path
) -> None:
    """What a one-org key is refused: plans, metrics and policies for the whole deployment.
    Every check but one: what the deployment's operations refuse by rules no JSON Schema
    states (a metric not in the catalogue, one named twice in a plan, a quantity for a meter
    that is not a sum) is a 4xx for a schema-valid body."""
    schemathesis_run(
        live_kernel,
        credentials["every_org"],
        8,
        "X-Org-Id: fuzz-org",
        log=server_log,
        excluded=("positive_data_acceptance",),
    )


def test_as_a_user(live_kernel: str, credentials: dict[str, str], server_log: Path) -> None:
    schemathesis_run(live_kernel, credentials["user"], 8, log=server_log)
