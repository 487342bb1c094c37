"""OpenTelemetry traces from a real `serve`, received by an OTLP/HTTP collector of the test's
own on 127.0.0.1: a request that carries a W3C `traceparent` is a server span of that trace,
named by its route, with a span per database statement under it; without OpenTelemetry's
variables, OpenTelemetry's SDK is not even imported."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import new_id
from tests.live import KernelServer, kernel_command

pytestmark = pytest.mark.long

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


class Collector:
    """An OTLP/HTTP trace receiver: every span exported to it, and an event set when a span
    of `wanted_trace` named `wanted_name` arrives."""

    def __init__(self, wanted_trace: str, wanted_name: str) -> None:
        self.spans: list[Any] = []
        self.services: set[str] = set()
        self.arrived = threading.Event()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for attribute in resource.resource.attributes:
                        if attribute.key == "service.name":
                            collector.services.add(attribute.value.string_value)
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                if any(
                    span.trace_id.hex() == wanted_trace and span.name == wanted_name
                    for span in collector.spans
                ):
                    collector.arrived.set()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    received = Collector(TRACE, "POST /api/v1/billing/org/check")
    yield received
    received.close()


def test_a_request_is_a_span_of_its_callers_trace_with_its_statements(
    postgres_url: str, collector: Collector
) -> None:
    key = kernel_command(postgres_url, "api-keys", "create", "--scopes", "usage:write,quota:check")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_SERVICE_NAME": "billing-kernel-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    server = KernelServer(postgres_url, env=env).start()
    try:
        org = new_id()
        bearer = {"Authorization": f"Bearer {key}"}
        event = {"org_id": org, "metric": "tokens", "quantity": 3, "idempotency_key": "t-1"}
        made = httpx.post(
            f"{server.url}/api/v1/usage/events", json={"events": [event]}, headers=bearer
        )
        assert made.status_code == 200, made.text
        checked = httpx.post(
            f"{server.url}/api/v1/billing/org/check",
            json={"metric": "tokens", "amount": 1},
            headers={**bearer, "X-Org-Id": org, "traceparent": f"00-{TRACE}-{PARENT}-01"},
        )
        assert checked.status_code == 200, checked.text
        assert checked.headers["x-request-id"] == TRACE
        assert collector.arrived.wait(30), "the request's span never reached the collector"
    finally:
        server.stop()
    ours = [span for span in collector.spans if span.trace_id.hex() == TRACE]
    [request] = [span for span in ours if span.name == "POST /api/v1/billing/org/check"]
    assert request.parent_span_id.hex() == PARENT  # the caller's span is its parent
    attributes = {a.key: a.value for a in request.attributes}
    assert attributes["http.route"].string_value == "/api/v1/billing/org/check"
    assert attributes["http.response.status_code"].int_value == 200
    statements = [span for span in ours if span.parent_span_id == request.span_id]
    assert statements, "no database statement was traced under the request"
    for statement in statements:
        texts = {a.key: a.value.string_value for a in statement.attributes}
        assert texts["db.system"] == "postgresql"
        assert org not in texts["db.query.text"]  # the text, never the parameters
    assert collector.services == {"billing-kernel-test"}
    others = {span.trace_id.hex() for span in collector.spans} - {TRACE}
    assert others, "the request without a traceparent began a trace of its own"


@pytest.mark.parametrize(
    "variables",
    [{}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SDK_DISABLED": "true"}],
)
def test_without_a_collector_the_sdk_is_not_even_imported(variables: dict[str, str]) -> None:
    """Off and free: no OpenTelemetry variables (or the SDK turned off), no tracer, and no
    import of OpenTelemetry's SDK in the serving process (FastAPI imports the API, a no-op,
    and its own telemetry is off)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    program = (
        "import sys\n"
        "from billing_kernel.api.app import create_app\n"
        "from billing_kernel.config import Settings\n"
        "create_app(Settings(database_url='sqlite+aiosqlite:///:memory:', dev_mode=True))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        env={**env, **variables},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
